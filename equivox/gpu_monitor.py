"""GPU utilisation during training, sampled through NVML (package nvidia-ml-py).

:class:`GpuUtilisation` reads the device's utilisation (the percentage of time in the
last sample period that a kernel ran, as nvidia-smi shows it) every ``interval_s`` in a
background thread; :meth:`GpuUtilisation.window_mean` gives the mean since its last call,
for the ``gpu_util_percent`` column of metrics.csv. On a CPU device, or without NVML (no
driver, no package, a device NVML cannot name), it does nothing and every reading is
empty. The figure is the whole device's: on a GPU shared with other jobs (or a MIG
slice, whose parent NVML reports) it includes their kernels.
"""
from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


def _nvml_handle(nvml, device):
    """The NVML handle of a torch CUDA device, by UUID only: NVML counts every GPU of the
    node, torch only the visible ones (CUDA_VISIBLE_DEVICES), so an index could name
    another job's GPU. Raises when the UUID cannot be had or found."""
    import torch

    uuid = str(torch.cuda.get_device_properties(device).uuid)
    return nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")


class GpuUtilisation:
    """Background NVML sampling of one device; a no-op without a GPU."""

    def __init__(self, device, interval_s: float = 0.5):
        self._sum, self._count, self._lock = 0.0, 0, threading.Lock()
        self._stop, self._thread, self._nvml, self._handle = threading.Event(), None, None, None
        if getattr(device, "type", str(device)) != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as error:  # noqa: BLE001 - sampling is optional, training is not
            log.warning("GPU utilisation will not be recorded (NVML: %s)", error)
            return
        try:
            self._nvml, self._handle = pynvml, _nvml_handle(pynvml, device)
        except Exception as error:  # noqa: BLE001
            log.warning("GPU utilisation will not be recorded (NVML cannot name %s: %s)", device, error)
            self._nvml = self._handle = None
            try:
                pynvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            return
        self._interval_s = interval_s
        self._thread = threading.Thread(target=self._run, name="gpu-utilisation", daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        return self._thread is not None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                value = float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
            except Exception as error:  # noqa: BLE001
                log.warning("GPU utilisation sampling stopped (NVML: %s)", error)
                return
            with self._lock:
                self._sum += value
                self._count += 1
            self._stop.wait(self._interval_s)

    def window_mean(self) -> str:
        """Mean utilisation (percent, one decimal) since the last call; "" when nothing was sampled."""
        with self._lock:
            total, count, self._sum, self._count = self._sum, self._count, 0.0, 0
        return f"{total / count:.1f}" if count else ""

    def close(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
