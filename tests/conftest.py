import os

# Tests see one CPU device unless a test asks for more in a subprocess: `import sigjax` would
# otherwise give JAX one host device per core (sigjax._devices).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["SIGJAX_HOST_DEVICES"] = "1"
# Nothing is written to the user's cache directory: tests that need the persistent
# compilation cache point SIGJAX_COMPILATION_CACHE at a temporary directory themselves.
os.environ["SIGJAX_COMPILATION_CACHE"] = "0"
