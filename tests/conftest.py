import os

# Tests see one CPU device unless a test asks for more in a subprocess.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
