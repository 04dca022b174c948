"""What a caller keeps of a network's outputs: each reduction equal to the plain expression it
stands for, masks surviving their trip as bits, and requests the outputs cannot answer refused."""

from __future__ import annotations

import numpy as np
import pytest

from screen.backends import load_runner
from screen.backends.outputs import Above, Channels, PackedMask, Winning, keep, run_keeping


def _outputs(shape=(2, 3, 5, 7, 9), seed=0) -> np.ndarray:
    out = np.random.default_rng(seed).random(shape, dtype=np.float32)
    out[0, :, 0, 0, 0] = 0.25  # a tie: argmax takes the first channel
    return out / out.sum(axis=1, keepdims=True)


def test_each_reduction_is_the_expression_it_stands_for() -> None:
    out = _outputs()
    above, winning, lesion = keep(out, (Above((1, 2), 0.5), Winning(1), Channels((2,))))
    np.testing.assert_array_equal(above, (out[:, 1] + out[:, 2]) > 0.5)
    np.testing.assert_array_equal(winning, np.argmax(out, axis=1) == 1)
    np.testing.assert_array_equal(lesion, out[:, 2:3])
    assert above.dtype == winning.dtype == np.bool_ and lesion.dtype == np.float32
    assert not winning[0, 0, 0, 0]  # channel 0 ties with 1 and 2 there, and wins


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 5, 7, 9), (1, 3, 8, 8)])
def test_a_mask_comes_back_from_its_bits_unchanged(shape) -> None:
    mask = np.random.default_rng(1).random(shape) > 0.5
    packed = PackedMask.of(mask)
    assert packed.nbytes == -(-mask.size // 8)
    back = packed.unpack()
    assert back.dtype == np.bool_ and back.shape == shape
    np.testing.assert_array_equal(back, mask)


def test_a_local_runner_keeps_what_its_whole_outputs_give(package) -> None:
    runner = load_runner(package, "segment", "onnxruntime", local=True)
    x = np.random.default_rng(2).uniform(-1, 1, (1, 1, 32, 32, 32)).astype(np.float32)
    kept = (Above((1, 2), 0.5), Channels((2,)))
    for mine, plain in zip(run_keeping(runner, x, kept), keep(runner.run(x), kept)):
        np.testing.assert_array_equal(mine, plain)


def test_what_the_outputs_cannot_answer_is_refused() -> None:
    out = _outputs()
    with pytest.raises(ValueError, match=r"asks for channel 3; the network has 3"):
        keep(out, (Channels((0, 3)),))
    with pytest.raises(TypeError, match="must be Channels, Above or Winning, got str"):
        keep(out, ("lesion",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channels must be a non-empty tuple"):
        Channels(())
    with pytest.raises(ValueError, match="channels must be a non-empty tuple"):
        Winning(-1)
    with pytest.raises(TypeError, match="threshold must be a float, got 1"):
        Above((1,), 1)  # type: ignore[arg-type]
