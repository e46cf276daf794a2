"""The CUDA kernels of lattice's GPU backend, compiled for the host and run on the
CPU (``runtime.EmulatedRuntime``): how the test suite checks them without a GPU."""
