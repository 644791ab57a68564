import os

# Tests see one CPU device unless a test asks for more in a subprocess: `import sigjax` would
# otherwise give JAX one host device per core (sigjax._devices).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["SIGJAX_HOST_DEVICES"] = "1"
# Nothing is written to the user's cache directory: tests that need the persistent
# compilation cache point SIGJAX_COMPILATION_CACHE at a temporary directory themselves.
os.environ["SIGJAX_COMPILATION_CACHE"] = "0"
# Tests compile hundreds of tiny programs and run each for a few steps: XLA's backend
# optimisation (LLVM) takes most of their time and buys nothing there, so tests compile without
# it (the suite runs in about 60 % of the time). Every check compares two computations compiled
# alike (child processes inherit the flag) or allows a float tolerance. SIGJAX_TEST_XLA_OPT=1
# runs the suite with the optimised build that users get.
if os.environ.get("SIGJAX_TEST_XLA_OPT") != "1":
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()
