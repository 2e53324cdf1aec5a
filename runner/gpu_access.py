"""How a Docker engine gives containers its NVIDIA GPUs: the NVIDIA runtime, or CDI.

nvidia-container-toolkit either registers the `nvidia` runtime with the engine (the classic
setup) or only writes a CDI specification (`nvidia-ctk cdi generate`, the toolkit's direction
since 1.14), which an engine with CDI enabled serves for device names like
`nvidia.com/gpu=0`. An engine of the second kind has no `nvidia` runtime and would look
GPU-less; Docker 28.2+ lists the CDI devices it found in `docker info` (DiscoveredDevices).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the SDK only where a container is started: `runner doctor` and reports
    import docker  # on a host without it (a GPU machine with no Docker) still read this

CDI_GPU = "nvidia.com/gpu"


@dataclass(frozen=True)
class GpuAccess:
    """`mode`: "runtime" (the NVIDIA runtime), "cdi" or None (no GPU: `reason` says why)."""

    mode: str | None
    cdi_devices: tuple[str, ...] = ()
    reason: str | None = None

    def describe(self) -> str:
        if self.mode == "runtime":
            return "NVIDIA runtime"
        if self.mode == "cdi":
            return f"CDI ({', '.join(self.cdi_devices)})"
        return "absent"

    def device_request(self, gpus: tuple[str, ...] = ()) -> docker.types.DeviceRequest:
        """The request for these GPUs (indexes or UUIDs; none: every GPU of the engine)."""
        import docker

        if self.mode == "cdi":
            names = [f"{CDI_GPU}={g}" for g in gpus] or [f"{CDI_GPU}=all"]
            return docker.types.DeviceRequest(driver="cdi", device_ids=names)
        if gpus:
            return docker.types.DeviceRequest(device_ids=list(gpus), capabilities=[["gpu"]])
        return docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])


def gpu_access(info: dict[str, Any]) -> GpuAccess:
    """What `docker info` says of an engine's NVIDIA GPUs."""
    if "nvidia" in (info.get("Runtimes") or {}):
        return GpuAccess("runtime")
    discovered = [
        str(d.get("ID", ""))
        for d in info.get("DiscoveredDevices") or []
        if d.get("Source") == "cdi" and str(d.get("ID", "")).startswith(f"{CDI_GPU}=")
    ]
    if discovered:
        return GpuAccess("cdi", tuple(discovered))
    if info.get("CDISpecDirs"):
        return GpuAccess(
            None,
            reason="this Docker engine has no NVIDIA runtime, and CDI is on "
            f"({', '.join(info['CDISpecDirs'])}) but lists no {CDI_GPU} device (Docker 28.2+ "
            "lists them; generate a spec with nvidia-container-toolkit's "
            "`nvidia-ctk cdi generate`)",
        )
    return GpuAccess(
        None,
        reason="this Docker engine has no NVIDIA runtime and no CDI devices "
        "(install nvidia-container-toolkit)",
    )
