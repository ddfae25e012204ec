"""GPU utilisation sampling: a no-op without a GPU; with NVML, window means of its readings."""
import sys
import time
import types

import torch

from equivox.gpu_monitor import GpuUtilisation


def test_cpu_device_samples_nothing():
    monitor = GpuUtilisation(torch.device("cpu"), interval_s=0.01)
    time.sleep(0.05)
    assert not monitor.active and monitor.window_mean() == ""
    monitor.close()


def fake_nvml(readings, fail_init=False):
    nvml = types.ModuleType("pynvml")
    calls = {"shutdown": 0}

    def init():
        if fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def rates(handle):
        assert handle == "handle-0"
        n = calls["n"] = calls.get("n", 0) + 1
        return types.SimpleNamespace(gpu=readings[min(n - 1, len(readings) - 1)])

    nvml.nvmlInit = init
    nvml.nvmlShutdown = lambda: calls.update(shutdown=calls["shutdown"] + 1)
    nvml.nvmlDeviceGetHandleByUUID = lambda uuid: (_ for _ in ()).throw(RuntimeError("no uuid"))
    nvml.nvmlDeviceGetHandleByIndex = lambda index: f"handle-{index}"
    nvml.nvmlDeviceGetUtilizationRates = rates
    return nvml, calls


def test_nvml_readings_are_averaged_per_window(monkeypatch):
    nvml, calls = fake_nvml([40, 60])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    # no CUDA here to give the device's UUID: the handle lookup is the fake's
    monkeypatch.setattr("equivox.gpu_monitor._nvml_handle", lambda nvml, device: "handle-0")
    monitor = GpuUtilisation(torch.device("cuda", 0), interval_s=0.01)
    assert monitor.active
    deadline = time.time() + 5
    while calls.get("n", 0) < 5 and time.time() < deadline:
        time.sleep(0.01)
    mean = float(monitor.window_mean())
    assert 40 < mean <= 60  # one reading of 40, the rest 60
    monitor.close()
    assert calls["shutdown"] == 1 and not monitor.active
    monitor.window_mean()
    assert monitor.window_mean() == ""  # the window was emptied; nothing sampled since


def test_nvml_missing_is_a_warning_not_an_error(monkeypatch, caplog):
    nvml, _ = fake_nvml([50], fail_init=True)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monitor = GpuUtilisation(torch.device("cuda", 0), interval_s=0.01)
    assert not monitor.active and monitor.window_mean() == ""
    assert "GPU utilisation will not be recorded" in caplog.text


def test_a_device_nvml_cannot_name_is_not_sampled_and_nvml_is_shut_down(monkeypatch, caplog):
    """Without the device's UUID there is no handle: never an index (under
    CUDA_VISIBLE_DEVICES it can name another job's GPU)."""
    nvml, calls = fake_nvml([50])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monitor = GpuUtilisation(torch.device("cuda", 0), interval_s=0.01)
    assert not monitor.active and monitor.window_mean() == "" and calls["shutdown"] == 1
    assert "cannot name" in caplog.text
