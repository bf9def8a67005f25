"""What a camera does to the light after the lens: exposure, sensor noise, white balance, the sRGB
curve and the JPEG file (numpy and OpenCV only, no bpy).

The generator renders a linear, scene-referred RGB image; ``develop`` turns it into the 8-bit sRGB
image that is written, optionally with the effects of ``SensorSpec``. The order follows a camera:
brightness (exposure) reaches the sensor, the sensor adds signal-dependent noise, the camera applies
its white-balance gains, then the sRGB curve and 8-bit quantisation. The id map never passes
through here: these effects change pixels, never labels.

Every random draw (which effects, their strengths, the noise itself) comes from the generator the
caller passes, the image's own "sensor" stream, so the same seed gives the same bytes and the other
streams (layout, materials, ...) never see these draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .genconfig import SensorConfig

#: noise floor of the signal-dependent noise: sigma(x) = s * sqrt((1 - f) * x + f); a dark pixel keeps
#: about a third of the noise of a white one (read noise), a bright one is dominated by shot noise
READ_NOISE_FLOOR = 0.1


@dataclass(frozen=True)
class SensorSpec:
    """One image's sensor effects; 0 / None means that effect is off."""

    noise: float = 0.0  # sigma at white, linear units
    exposure: float = 0.0  # stops
    white_balance: float = 0.0  # stops of red gain; blue gets the opposite
    jpeg_quality: int | None = None  # None: PNG

    @classmethod
    def sample(cls, rng: np.random.Generator, cfg: SensorConfig) -> "SensorSpec":
        """Always the same 8 draws, whatever is switched on, so later draws never shift."""
        u = rng.uniform(size=4)
        v = rng.uniform(size=4)
        lo, hi = cfg.noise
        noise = lo + (hi - lo) * float(v[0]) if u[0] < cfg.noise_probability else 0.0
        lo, hi = cfg.exposure
        exposure = lo + (hi - lo) * float(v[1]) if u[1] < cfg.exposure_probability else 0.0
        lo, hi = cfg.white_balance
        wb = lo + (hi - lo) * float(v[2]) if u[2] < cfg.white_balance_probability else 0.0
        qlo, qhi = cfg.jpeg_quality
        quality = min(qhi, qlo + int((qhi - qlo + 1) * float(v[3]))) if u[3] < cfg.jpeg_probability else None
        return cls(float(noise), float(exposure), float(wb), quality)

    @property
    def suffix(self) -> str:
        """The image file's suffix: ``.jpg`` when it is written as JPEG, else ``.png``."""
        return ".png" if self.jpeg_quality is None else ".jpg"

    def to_record(self) -> dict[str, float | int]:
        """The effects that are on, for the image's record (``scene.sensor``)."""
        out: dict[str, float | int] = {}
        for key in ("noise", "exposure", "white_balance"):
            if getattr(self, key):
                out[key] = round(float(getattr(self, key)), 6)
        if self.jpeg_quality is not None:
            out["jpeg_quality"] = self.jpeg_quality
        return out


NO_EFFECTS = SensorSpec()


def normalise_exposure(linear: np.ndarray) -> np.ndarray:
    """Random lights sometimes blow a scene out: scale the linear image down (never up) so the 97th
    percentile of its brightest channel is at most 0.95, a deterministic function of the pixels."""
    p97 = float(np.percentile(linear.max(axis=2), 97))
    if p97 > 0.95:
        return linear * np.float32(0.95 / p97)
    return linear


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """Linear RGB (clipped to [0, 1]) -> 8-bit sRGB with the standard sRGB transfer curve."""
    lin = np.clip(linear, 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.power(lin, 1 / 2.4) - 0.055)
    return np.rint(srgb * 255.0).astype(np.uint8)


def develop(linear: np.ndarray, spec: SensorSpec = NO_EFFECTS, rng: np.random.Generator | None = None,
            auto_exposure: bool = True) -> np.ndarray:
    """Linear HxWx3 render -> 8-bit sRGB HxWx3 with ``spec``'s effects; without effects it is exactly
    the sRGB encoding of the (auto-exposed) render. ``rng`` draws the noise (needed when noise is on)."""
    lin = linear[..., :3].astype(np.float32)
    if auto_exposure:
        lin = normalise_exposure(lin)
    if spec.exposure:
        lin = lin * np.float32(2.0 ** spec.exposure)
    if spec.noise:
        if rng is None:
            raise ValueError("sensor noise needs a random generator")
        x = np.clip(lin, 0.0, 1.0)
        sigma = np.float32(spec.noise) * np.sqrt((1.0 - READ_NOISE_FLOOR) * x + READ_NOISE_FLOOR)
        lin = lin + sigma * rng.standard_normal(lin.shape, dtype=np.float32)
    if spec.white_balance:
        gains = np.array([2.0 ** spec.white_balance, 1.0, 2.0 ** -spec.white_balance], np.float32)
        lin = lin * gains
    return linear_to_srgb8(lin)


def encode_image(rgb: np.ndarray, suffix: str, jpeg_quality: int | None = None) -> bytes:
    """RGB uint8 -> the bytes of a ``.png`` or ``.jpg`` file (OpenCV; deterministic: same array, same bytes)."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    params: list[int] = []
    if suffix == ".jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality if jpeg_quality is not None else 95)]
    elif suffix != ".png":
        raise ValueError(f"images are written as .png or .jpg, not {suffix}")
    ok, buf = cv2.imencode(suffix, bgr, params)
    if not ok:
        raise OSError(f"OpenCV could not encode a {suffix} image")
    return buf.tobytes()
