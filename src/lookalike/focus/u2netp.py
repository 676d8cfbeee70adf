"""The U²-Net-p network in torch, to load the U²-Net project's own ``u2netp.pth`` and export it to ONNX.

The definition follows ``model/u2net.py`` of the U²-Net project (Xuebin Qin et al., Apache-2.0, "U²-Net:
Going Deeper with Nested U-Structure for Salient Object Detection", 2020) with the same module names, so its
state dict loads strictly: residual U-blocks (RSU-7 down to RSU-4, and the dilated RSU-4F) in a six-stage
encoder and five-stage decoder, a side output per stage and a 1x1 convolution fusing them. ``RSU(height)``
here builds what the project writes out as the classes RSU7, RSU6, RSU5 and RSU4. Only the fused output is
exported (the first of the seven the project's forward returns), under the name ``mask``, from an input
``image`` of symbolic batch, height and width.

torch is imported only when a ``.pth`` is loaded: the shipped ONNX file needs none of this.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from lookalike.errors import ModelError

EXPORT_VERSION = "1"


def build_u2netp() -> Any:
    """A U²-Net-p torch module (random weights), eval mode, whose forward returns the fused sigmoid mask."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def upsample_like(src: torch.Tensor, tar: torch.Tensor) -> torch.Tensor:
        return F.interpolate(src, size=tar.shape[2:], mode="bilinear", align_corners=False)

    class REBNCONV(nn.Module):
        def __init__(self, in_ch: int, out_ch: int, dirate: int = 1) -> None:
            super().__init__()
            self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate)
            self.bn_s1 = nn.BatchNorm2d(out_ch)
            self.relu_s1 = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu_s1(self.bn_s1(self.conv_s1(x)))

    class RSU(nn.Module):
        """RSU-``height``: encoder convs 1..height-1 with a 2x max-pool after all but the last, a dilated
        bottom conv, and a decoder that upsamples back and concatenates the skips; plus the input residual."""

        def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int) -> None:
            super().__init__()
            self.height = height
            self.rebnconvin = REBNCONV(in_ch, out_ch)
            self.rebnconv1 = REBNCONV(out_ch, mid_ch)
            for level in range(2, height):
                setattr(self, f"rebnconv{level}", REBNCONV(mid_ch, mid_ch))
            setattr(self, f"rebnconv{height}", REBNCONV(mid_ch, mid_ch, dirate=2))
            for level in range(height - 1, 1, -1):
                setattr(self, f"rebnconv{level}d", REBNCONV(mid_ch * 2, mid_ch))
            self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch)
            self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            hxin = self.rebnconvin(x)
            skips = [self.rebnconv1(hxin)]
            for level in range(2, self.height):
                skips.append(getattr(self, f"rebnconv{level}")(self.pool(skips[-1])))
            hx = getattr(self, f"rebnconv{self.height}")(skips[-1])
            for level in range(self.height - 1, 0, -1):
                hx = getattr(self, f"rebnconv{level}d")(torch.cat((hx, skips[level - 1]), 1))
                if level > 1:
                    hx = upsample_like(hx, skips[level - 2])
            return hx + hxin

    class RSU4F(nn.Module):
        """RSU-4F: no pooling, dilations 1, 2, 4, 8 instead."""

        def __init__(self, in_ch: int, mid_ch: int, out_ch: int) -> None:
            super().__init__()
            self.rebnconvin = REBNCONV(in_ch, out_ch)
            self.rebnconv1 = REBNCONV(out_ch, mid_ch)
            self.rebnconv2 = REBNCONV(mid_ch, mid_ch, dirate=2)
            self.rebnconv3 = REBNCONV(mid_ch, mid_ch, dirate=4)
            self.rebnconv4 = REBNCONV(mid_ch, mid_ch, dirate=8)
            self.rebnconv3d = REBNCONV(mid_ch * 2, mid_ch, dirate=4)
            self.rebnconv2d = REBNCONV(mid_ch * 2, mid_ch, dirate=2)
            self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            hxin = self.rebnconvin(x)
            hx1 = self.rebnconv1(hxin)
            hx2 = self.rebnconv2(hx1)
            hx3 = self.rebnconv3(hx2)
            hx4 = self.rebnconv4(hx3)
            hx3d = self.rebnconv3d(torch.cat((hx4, hx3), 1))
            hx2d = self.rebnconv2d(torch.cat((hx3d, hx2), 1))
            return self.rebnconv1d(torch.cat((hx2d, hx1), 1)) + hxin

    class U2NETP(nn.Module):
        def __init__(self, in_ch: int = 3, out_ch: int = 1) -> None:
            super().__init__()
            self.stage1 = RSU(7, in_ch, 16, 64)
            self.stage2 = RSU(6, 64, 16, 64)
            self.stage3 = RSU(5, 64, 16, 64)
            self.stage4 = RSU(4, 64, 16, 64)
            self.stage5 = RSU4F(64, 16, 64)
            self.stage6 = RSU4F(64, 16, 64)
            self.stage5d = RSU4F(128, 16, 64)
            self.stage4d = RSU(4, 128, 16, 64)
            self.stage3d = RSU(5, 128, 16, 64)
            self.stage2d = RSU(6, 128, 16, 64)
            self.stage1d = RSU(7, 128, 16, 64)
            for side in range(1, 7):
                setattr(self, f"side{side}", nn.Conv2d(64, out_ch, 3, padding=1))
            self.outconv = nn.Conv2d(6 * out_ch, out_ch, 1)
            self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            hx1 = self.stage1(x)
            hx2 = self.stage2(self.pool(hx1))
            hx3 = self.stage3(self.pool(hx2))
            hx4 = self.stage4(self.pool(hx3))
            hx5 = self.stage5(self.pool(hx4))
            hx6 = self.stage6(self.pool(hx5))
            hx5d = self.stage5d(torch.cat((upsample_like(hx6, hx5), hx5), 1))
            hx4d = self.stage4d(torch.cat((upsample_like(hx5d, hx4), hx4), 1))
            hx3d = self.stage3d(torch.cat((upsample_like(hx4d, hx3), hx3), 1))
            hx2d = self.stage2d(torch.cat((upsample_like(hx3d, hx2), hx2), 1))
            hx1d = self.stage1d(torch.cat((upsample_like(hx2d, hx1), hx1), 1))
            d1 = self.side1(hx1d)
            sides = [d1] + [
                upsample_like(getattr(self, f"side{side}")(hx), d1)
                for side, hx in zip(range(2, 7), (hx2d, hx3d, hx4d, hx5d, hx6), strict=True)
            ]
            return torch.sigmoid(self.outconv(torch.cat(sides, 1)))

    return U2NETP().eval()


def load_pth(path: Path) -> Any:
    """U²-Net-p with the weights of a ``u2netp.pth`` state dict (as the U²-Net project publishes it)."""
    try:
        import torch
    except ImportError as exc:
        from lookalike.embed.export import EXPORT_INSTALL

        raise ModelError(f"loading {path} needs torch ({EXPORT_INSTALL}), or an ONNX file instead") from exc
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors
        raise ModelError(f"cannot read {path} as a torch state dict: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state dict")
    state = {key.removeprefix("module."): value for key, value in state.items()}  # saved from DataParallel
    model = build_u2netp()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelError(
            f"{path} is not a U²-Net-p state dict ({len(missing)} weights missing, e.g. {missing[:3]};"
            f" {len(unexpected)} unexpected, e.g. {unexpected[:3]}). The full U²-Net (u2net.pth, 176 MB) is a"
            " different network"
        )
    wrong = [key for key in expected if tuple(expected[key].shape) != tuple(state[key].shape)]
    if wrong:
        raise ModelError(f"{path}: {len(wrong)} weights have other shapes than U²-Net-p's, e.g. {wrong[:3]}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def export_pth(path: Path, target: Path) -> Path:
    """Export a ``u2netp.pth`` to ONNX at ``target`` (once: an existing ``target`` is reused), atomically."""
    if target.is_file():
        return target
    model = load_pth(path)
    return export_module(model, target)


def export_module(model: Any, target: Path) -> Path:
    """Export a U²-Net-p torch module to ONNX, input ``image`` (n, 3, h, w) float, output ``mask``."""
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".u2netp-", suffix=".onnx.tmp")
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.zeros((1, 3, 320, 320)),),
                tmp_name,
                input_names=["image"],
                output_names=["mask"],
                dynamic_axes={
                    "image": {0: "batch", 2: "height", 3: "width"},
                    "mask": {0: "batch", 2: "height", 3: "width"},
                },
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp_name, target)
    except Exception as exc:
        raise ModelError(f"cannot export U²-Net-p to ONNX: {exc}") from exc
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target
