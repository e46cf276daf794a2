"""The backend seam as a second backend sees it: dispatch by array type, the
interface's methods, and a backend that leaves the alignment distribution out."""

import numpy as np
import pytest

import lattice
from lattice.backends import Backend, get_backend, register_backend, unregister_backend


class FakeArray(np.ndarray):
    """A numpy array whose type lives in another package (as cupy.ndarray would)."""


FakeArray.__module__ = "fake_arrays.core"


class ForwardOnly(Backend):
    """A backend that computes forward scores with the CPU kernels and nothing else:
    what a partial GPU backend looks like to the engine."""

    name = "forward-only"

    def __init__(self):
        self.problems = []

    def forward(self, problem, semiring):
        self.problems.append(problem)
        return get_backend("cpu").forward(problem, semiring)


@pytest.fixture
def forward_only():
    register_backend("forward-only", ForwardOnly, ["fake_arrays"])
    try:
        yield get_backend("forward-only")
    finally:
        unregister_backend("forward-only")


def _inputs():
    rng = np.random.default_rng(0)
    e = np.log(rng.dirichlet(np.ones(3), size=(2, 6))).view(FakeArray)
    return e, lattice.build("ctc", [1, 2])


def test_arrays_of_a_registered_package_go_to_its_backend(forward_only):
    e, g = _inputs()
    scores = lattice.forward(e, g)
    assert len(forward_only.problems) == 1
    np.testing.assert_array_equal(scores, lattice.forward(np.asarray(e), g))


@pytest.mark.parametrize("call, what", [
    (lambda e, g: lattice.sample(e, g, 3, seed=0), r"sampling \(lattice.sample\)"),
    (lambda e, g: lattice.kbest(e, g, 2), r"k-best paths \(lattice.kbest\)"),
    (lambda e, g: lattice.entropy(e, g), r"entropy and token posteriors"),
    (lambda e, g: lattice.token_posteriors(e, g), r"entropy and token posteriors"),
])
def test_a_backend_without_the_distribution_says_what_it_lacks(forward_only, call, what):
    e, g = _inputs()
    with pytest.raises(NotImplementedError, match=r"'forward-only' backend does not "
                                                  r"implement " + what):
        call(e, g)


def test_the_base_class_leaves_every_method_to_the_backend(forward_only):
    e, g = _inputs()
    for call in (lambda: lattice.forward_backward(e, g), lambda: lattice.viterbi(e, g)):
        with pytest.raises(NotImplementedError):
            call()


class DeviceLike(ForwardOnly):
    """A backend whose arrays live elsewhere (its namespace is not numpy): the engine
    reads lengths and weights given in its arrays through ``to_numpy``."""

    name = "device-like"

    class xp:
        ascontiguousarray = staticmethod(np.ascontiguousarray)

    def to_numpy(self, array):
        self.copied.append(type(array))
        return np.asarray(array).view(np.ndarray)


def test_lengths_and_weights_on_the_device_are_read_through_to_numpy():
    backend = DeviceLike()
    backend.copied = []
    register_backend("device-like", backend, ["fake_arrays"])
    try:
        e, g = _inputs()
        gb = lattice.batch([g, g])
        lengths = np.array([6, 4]).view(FakeArray)
        start = np.asarray(gb.start).copy().view(FakeArray)
        scores = lattice.forward(e, gb, lengths, start_weights=start)
        assert backend.copied == [FakeArray, FakeArray]
        want = lattice.forward(np.asarray(e), gb, [6, 4])
        np.testing.assert_allclose(scores, want, rtol=1e-12)
    finally:
        unregister_backend("device-like")


class FakeGPUArray:
    """An array on a GPU of a package lattice has no backend for (numba, say)."""

    __cuda_array_interface__ = {"shape": (1, 2, 3), "typestr": "<f4", "version": 3,
                                "data": (0, False)}


def test_a_gpu_array_without_a_backend_says_how_to_compute_on_it():
    with pytest.raises(TypeError, match=r"cupy.asarray\(emissions\).*lattice\[cupy\]"):
        lattice.forward(FakeGPUArray(), lattice.build("ctc", [1]))


def test_the_cupy_backend_is_registered_and_names_its_package_when_missing():
    assert "cupy" in lattice.backends.available_backends()
    try:
        import cupy  # noqa: F401
    except ImportError:
        from lattice.backends.cupy import CuPyRuntime

        with pytest.raises(ImportError, match=r"lattice\[cupy\].*cupy-cuda12x"):
            CuPyRuntime()
        with pytest.raises(ImportError, match="the GPU backend needs CuPy"):
            get_backend("cupy").xp
    else:
        pytest.skip("CuPy is installed")


def test_cuda_tensors_without_cupy_name_the_package():
    torch = pytest.importorskip("torch")
    from lattice import _torch_ops

    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"CUDA tensors.*lattice\[cupy\]"):
            _torch_ops.cupy_module()
        # CPU tensors never need it
        with _torch_ops.device_context(torch.zeros(1)):
            pass
    else:
        pytest.skip("CuPy is installed")
