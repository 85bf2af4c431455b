"""tts_lib.claims: a check prints its claim when it holds and fails naming it otherwise."""

import numpy as np
import pytest
import torch

from tts_lib.claims import ClaimError, check, check_close


def test_check_prints_the_claim(capsys):
    check(torch.tensor([True, True]), "both hold", z=1.23456)
    assert capsys.readouterr().out == "✓ both hold (z = 1.235)\n"


def test_check_fails_naming_the_claim_and_numbers():
    with pytest.raises(ClaimError, match=r"claim does not hold: k\* = 3 \(k = 4\)"):
        check(np.int64(4) == 3, "k* = 3", k=np.int64(4))
    with pytest.raises(AssertionError):  # a ClaimError is an AssertionError
        check(torch.tensor([True, False]), "all hold")


def test_check_close_relative_gap(capsys):
    check_close(torch.tensor([1.0, 2.0]), [1.0, 2.0 + 1e-9], "equal", rtol=1e-8)
    assert capsys.readouterr().out.startswith("✓ equal (max_rel_gap = ")
    with pytest.raises(ClaimError, match="equal"):
        check_close([1.0, 2.0], [1.0, 2.1], "equal", rtol=1e-3)
    with pytest.raises(ClaimError):
        check_close([np.nan], [1.0], "finite", atol=1.0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: check(0.5, "x"), "ok must be a boolean"),
        (lambda: check(torch.tensor([], dtype=torch.bool), "x"), "empty"),
        (lambda: check(True, ""), "claim must be a non-empty string"),
        (lambda: check_close([1.0], [1.0, 2.0], "x"), "shape"),
        (lambda: check_close([1.0], [1.0], "x", rtol=-1), "rtol"),
        (lambda: check_close([1.0], [1.0], "x", atol=float("nan")), "atol"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
