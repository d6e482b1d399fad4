"""Where tensors live: one rule for every trainer, executor and estimator.

    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("auto").type in ("cpu", "cuda")
    True
"""

from __future__ import annotations

import functools

import torch

from visionnets.errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when present, else the CPU; anything else is checked and taken as given.

    A name torch does not know, or CUDA asked for where torch sees no GPU, is a ConfigError
    that names the value.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device: {device!r} is not a torch device; expected 'auto', 'cpu' or 'cuda[:k]'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} asks for CUDA but torch sees no GPU; use 'auto' or 'cpu'")
    return dev


@functools.cache
def cpu_info() -> dict[str, str]:
    """The first processor's entries of ``/proc/cpuinfo`` (``vendor_id``, ``cpu family``,
    ``model``, ``model name``, ``flags``, ...), read once; ``{}`` where there is none (not Linux).
    The one place visionnets reads the CPU's identity (bf16 support, the linear layers' kernel
    choice, the machine facts of benchmark results)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if info:                        # the end of the first processor's block
                        break
                    continue
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        return {}
    return info


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``avx512f``, ``avx512_bf16``, ``amx_bf16``, ...)."""
    return frozenset(cpu_info().get("flags", "").split())


@functools.cache
def fast_bf16(device_type: str) -> bool:
    """Whether ``device_type`` computes bfloat16 fast: CUDA with bf16 support, or a CPU with
    AVX-512 BF16 or AMX (elsewhere bf16 matmuls are emulated and slower than float32)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    return False
