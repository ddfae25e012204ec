"""Readable layer names: stage, block and part of every hooked nonlinearity, the same
for a model and its plain twin."""
from equivox.dead_units import module_response
from equivox.layer_names import layer_names
from equivox.models import build_model

RESNET = {"family": "plain_resnet", "outer_channels": [2, 3, 3], "inner_channels": [2, 2],
          "repeats": [2, 1], "pool_factors": [2, 1], "head_channels": [8, 8]}
DENSENET = {"family": "plain_densenet", "transition_channels": [2, 3, 4], "growth_channels": 2,
            "bottleneck_factor": 2, "block_depth": [2, 1], "pool_factors": 2, "head_channels": [8]}
CNN = {"family": "plain_cnn", "layout": "arch_3", "width": 2, "repeats": 0, "head_channels": [8]}


def hooked_names(name: str, spec: dict) -> list[str]:
    """Readable names of the nonlinearities the dead-unit analysis hooks, forward order."""
    model = build_model(name, spec)
    names = layer_names(model, spec)
    return [names[path] for path, module in model.named_modules() if module_response(module)]


def test_resnet_layers_are_named_by_stage_and_block():
    assert hooked_names("resnet", RESNET) == [
        "stem",
        "stage 1 · block 1 · inner", "stage 1 · block 1 · out",
        "stage 1 · block 2 · inner", "stage 1 · block 2 · out",
        "stage 2 · block 1 · inner", "stage 2 · block 1 · out",
        "final", "head 1", "head 2"]


def test_densenet_layers_are_named_by_block_and_layer():
    assert hooked_names("densenet", DENSENET) == [
        "stem",
        "dense 1 · layer 1 · inner", "dense 1 · layer 1 · out",
        "dense 1 · layer 2 · inner", "dense 1 · layer 2 · out",
        "dense 2 · layer 1 · inner", "dense 2 · layer 1 · out",
        "final", "head 1"]


def test_plain_layouts_are_named_by_convolution():
    assert hooked_names("cnn", CNN) == ["conv 1", "conv 2", "conv 3", "conv 4", "conv 5", "head 1"]
