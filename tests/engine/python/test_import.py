"""`import strata` from the build tree: the package is the build tree's, it loads the build
tree's libstrata, __version__ is libstrata's strata_version() and the project's version, and
STRATA_LIBRARY overrides where the library is (a missing one is an ImportError naming it).
Usage: test_import.py PROJECT_VERSION BUILD_DIR"""

import os
import subprocess
import sys
import tempfile


def main() -> None:
    version, build = sys.argv[1], os.path.realpath(sys.argv[2])
    import strata

    assert strata.__version__ == version, f"__version__ {strata.__version__}, project {version}"
    assert strata.version() == strata.__version__
    package = os.path.realpath(os.path.dirname(strata.__file__))
    assert package == os.path.join(build, "python", "strata"), package
    lib = os.path.realpath(strata.library_path())
    assert lib == os.path.realpath(os.path.join(build, "lib", "libstrata.so.0")), lib
    assert issubclass(strata.StrataError, Exception)

    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        # STRATA_LIBRARY names the library to load: a link to the build tree's loads.
        link = os.path.join(tmp, "libstrata-link.so")
        os.symlink(lib, link)
        env["STRATA_LIBRARY"] = link
        out = subprocess.run([sys.executable, "-c", "import strata; print(strata.library_path(), "
                              "strata.__version__)"], env=env, capture_output=True, text=True,
                             check=True, timeout=120).stdout.split()
        assert out == [link, version], out
        # ... and a missing one is an ImportError naming it and the variable.
        env["STRATA_LIBRARY"] = os.path.join(tmp, "missing.so")
        r = subprocess.run([sys.executable, "-c", "import strata"], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "ImportError" in r.stderr, r.stderr
        assert "missing.so" in r.stderr and "STRATA_LIBRARY" in r.stderr, r.stderr
    print(f"python import: ok (strata {strata.__version__} from {package})")


if __name__ == "__main__":
    main()
