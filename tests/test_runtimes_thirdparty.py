"""Third-party networks of the kind users bring: convert_deconvs + export_onnx with
ExportOptions(target="any") + check on all five consumers (onnxruntime as baseline; float32
defaults 1e-5 x max(scale, 1) + 1e-3 x |ref|).

- a MONAI UNet (2-D; its up path is ConvTranspose2d(k=3, s=2, p=1, output_padding=1));
- a segmentation_models_pytorch Linknet (its decoder up-samples with ConvTranspose2d(k=4, s=2,
  p=1));
- a DCGAN generator, written here (ConvTranspose2d(k=4, s=2, p=1) x 3 after a 1 -> 4 projection
  that convert_deconvs skips, stride 1).

MONAI and smp come with ``pip install -c constraints.txt -e '.[dev]'`` (the ``thirdparty`` extra):
they leave the pinned torch alone. smp imports timm, and timm imports torchvision; the only
torchvision wheels on the CI machine are CUDA builds that cannot load their kernels beside the CPU
torch (``operator torchvision::nms does not exist``), so these tests install
``exporters.runtimes.install_torchvision_stand_in()`` first: the two operator schemas torchvision's
import registers fake kernels for, declared without kernels. Nothing here calls a torchvision op.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from exporters.pytorch import ExportOptions, PixelDCL2d, convert_deconvs, export_onnx
from exporters.runtimes import RUNTIMES, check_model, install_torchvision_stand_in

pytestmark = pytest.mark.slow
ALL = tuple(RUNTIMES)


@pytest.fixture(scope="module", autouse=True)
def _stand_in():
    install_torchvision_stand_in()


def _convert_export_check(model: nn.Module, tmp_path, shape, *, kind="pixel_dcl", dynamic=True):
    report = convert_deconvs(model, kind)
    model.eval()
    path = export_onnx(model, tmp_path / "model.onnx", shape,
                       options=ExportOptions(target="any", dynamic=dynamic))
    check = check_model(path, ALL)
    statuses = {r.runtime: r.status for r in check.results}
    assert statuses == {"onnxruntime": "baseline", **{r: "pass" for r in ALL[1:]}}, str(check)
    return report, check


def test_monai_unet(tmp_path):
    from monai.networks.nets import UNet as MonaiUNet

    torch.manual_seed(0)
    model = MonaiUNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(4, 8, 16),
                      strides=(2, 2), num_res_units=1)
    report, _ = _convert_export_check(model, tmp_path, (1, 1, 32, 32))
    assert len(report.replaced) == 2 and not report.skipped, str(report)


def test_segmentation_models_pytorch_linknet(tmp_path):
    smp = pytest.importorskip("segmentation_models_pytorch",
                              reason="pip install segmentation-models-pytorch (pixeldcn[thirdparty])")
    torch.manual_seed(0)
    model = smp.Linknet("resnet18", encoder_weights=None, encoder_depth=3, in_channels=3, classes=2)
    report, _ = _convert_export_check(model, tmp_path, (1, 3, 32, 32))
    assert len(report.replaced) == 3 and all("PixelDCL2d" in what for _, what in report.replaced)


class DCGANGenerator(nn.Module):
    """The DCGAN generator of Radford et al. (PyTorch's example), at a small width."""

    def __init__(self, nz: int = 16, ngf: int = 8, nc: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (N, nz, 1, 1) -> (N, nc, 32, 32)
        return self.net(z)


def test_dcgan_generator(tmp_path):
    torch.manual_seed(0)
    model = DCGANGenerator()
    report, check = _convert_export_check(model, tmp_path, (2, 16, 1, 1), dynamic=False)
    assert [p for p, _ in report.replaced] == ["net.3", "net.6", "net.9"]
    assert report.skipped == [("net.0", "stride (1, 1), expected (2, 2)")]
    assert all(isinstance(model.net[i], PixelDCL2d) for i in (3, 6, 9))
    assert check.inputs == (("x", (2, 16, 1, 1), "float32"),)
