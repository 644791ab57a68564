import os
import shutil
import tempfile

# Tests see one CPU device unless a test asks for more in a subprocess: `import sigjax` would
# otherwise give JAX one host device per core (sigjax._devices).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["SIGJAX_HOST_DEVICES"] = "1"
# Nothing is written to the user's cache directory. The test run shares one persistent
# compilation cache of its own, in a temporary directory that both xdist workers and every
# child process see and that is removed when the run ends: many tests (and the child processes
# of the CLI, resume and docs tests) compile the same tiny programs, and each is then compiled
# once per run. A cached executable is the one XLA built, so no number changes.
# SIGJAX_TEST_COMPILE_CACHE=0 compiles everything every time; tests of the cache itself point
# SIGJAX_COMPILATION_CACHE at a directory of their own.
# The process that starts the run makes the directory; the workers inherit it with the
# environment, as every child process does.
RUN_CACHE = "SIGJAX_TEST_RUN_CACHE"
OWNS_CACHE = RUN_CACHE not in os.environ
if OWNS_CACHE:
    os.environ[RUN_CACHE] = tempfile.mkdtemp(prefix="sigjax-test-jax-cache-")
if os.environ.get("SIGJAX_TEST_COMPILE_CACHE") == "0":
    os.environ["SIGJAX_COMPILATION_CACHE"] = "0"
else:
    os.environ["SIGJAX_COMPILATION_CACHE"] = os.environ[RUN_CACHE]
# Plans stay the cache model's: with a cache directory in force a sweep would otherwise time
# candidate `lax.map` batches and store the fastest there, so one test's timings (on a noisy
# machine) would change another's strategy. Tests of calibration patch its store themselves.
os.environ.setdefault("SIGJAX_CALIBRATE", "0")
# Tests compile hundreds of tiny programs and run each for a few steps: XLA's backend
# optimisation (LLVM) takes most of their time and buys nothing there, so tests compile without
# it (the suite runs in about 60 % of the time). Every check compares two computations compiled
# alike (child processes inherit the flag) or allows a float tolerance. SIGJAX_TEST_XLA_OPT=1
# runs the suite with the optimised build that users get.
if os.environ.get("SIGJAX_TEST_XLA_OPT") != "1":
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()


def pytest_unconfigure(config):
    if OWNS_CACHE:  # the process that made the run's cache removes it
        shutil.rmtree(os.environ[RUN_CACHE], ignore_errors=True)
