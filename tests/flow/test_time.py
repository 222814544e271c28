import pytest
import torch

from arcflow.flow import step_boundaries, unwarp_sigma, warp_sigma


def test_two_step_layout_of_released_models():
    tau = step_boundaries(2, 1.0)
    assert tau.tolist() == [1.0, 0.5, 0.0]
    sigma = warp_sigma(tau, 3.2)
    # 3.2 * 0.5 / (1 + 2.2 * 0.5) = 1.6 / 2.1
    torch.testing.assert_close(sigma, torch.tensor([1.0, 1.6 / 2.1, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("nfe", [1, 2, 3, 7])
@pytest.mark.parametrize("rho", [1.0, 0.5, 0.25])
def test_boundaries_segments(nfe, rho):
    tau = step_boundaries(nfe, rho)
    assert tau.shape == (nfe + 1,)
    assert tau[0] == 1.0 and tau[-1] == 0.0
    lengths = tau[:-1] - tau[1:]
    base = 1.0 / (nfe - 1 + rho)
    torch.testing.assert_close(lengths[:-1], torch.full((nfe - 1,), base, dtype=torch.float64))
    torch.testing.assert_close(lengths[-1], torch.tensor(rho * base, dtype=torch.float64))


def test_warp_roundtrip_and_endpoints():
    tau = torch.linspace(0, 1, 101, dtype=torch.float64)
    for shift in (1.0, 3.2, 0.5):
        sigma = warp_sigma(tau, shift)
        torch.testing.assert_close(unwarp_sigma(sigma, shift), tau)
        assert sigma[0] == 0 and sigma[-1] == 1
    assert warp_sigma(0.5, 1.0) == 0.5


@pytest.mark.parametrize(
    "call",
    [
        lambda: step_boundaries(0),
        lambda: step_boundaries(2.0),
        lambda: step_boundaries(2, 0.0),
        lambda: step_boundaries(2, 1.5),
        lambda: warp_sigma(1.2, 3.2),
        lambda: unwarp_sigma(torch.tensor([-0.1, 0.5]), 3.2),
        lambda: warp_sigma(0.5, 0.0),
    ],
)
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
