"""Install the pinned surfpool npm package next to the launcher script.

Run as ``python -m sandbox.solana.install``; ``make demo`` / ``make test`` call
:func:`ensure_installed`, which does nothing when the package is already there.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sandbox.solana.errors import InstallError

NODE_DIR = Path(__file__).resolve().parent / "node"
LAUNCHER = NODE_DIR / "surfnet.js"

# process.platform-process.arch -> npm package holding surfpool's native addon.
PLATFORM_PACKAGES: dict[str, str] = {
    "linux-x64": "@solana/surfpool-linux-x64-gnu",
    "darwin-arm64": "@solana/surfpool-darwin-arm64",
    "darwin-x64": "@solana/surfpool-darwin-x64",
}

_ARCH = {"x86_64": "x64", "amd64": "x64", "arm64": "arm64", "aarch64": "arm64"}


def platform_package() -> str:
    """Return the surfpool npm package name for this machine, or raise InstallError."""
    key = f"{sys.platform}-{_ARCH.get(platform.machine().lower(), platform.machine())}"
    try:
        return PLATFORM_PACKAGES[key]
    except KeyError:
        raise InstallError(
            f"surfpool ships no native package for {key}; supported: {', '.join(PLATFORM_PACKAGES)}"
        ) from None


def _pinned_version(package: str) -> str:
    manifest = json.loads((NODE_DIR / "package.json").read_text())
    deps: dict[str, str] = {
        **manifest.get("dependencies", {}),
        **manifest.get("optionalDependencies", {}),
    }
    return deps[package]


def is_installed() -> bool:
    """True when the pinned surfpool package for this platform is in node_modules."""
    package = platform_package()
    installed = NODE_DIR / "node_modules" / package / "package.json"
    if not installed.is_file():
        return False
    return bool(json.loads(installed.read_text()).get("version") == _pinned_version(package))


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    # Parallel `make demo` + `make test` must not run two npm installs at once.
    digest = hashlib.sha1(str(NODE_DIR).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"cryptocity-surfpool-{digest}.lock"
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_installed(*, quiet: bool = True) -> Path:
    """Install surfpool with npm if needed and return the directory holding ``surfnet.js``.

    Uses ``npm ci`` (exact versions from package-lock.json) or ``npm install``
    when there is no lock file. Raises :class:`InstallError` when Node.js/npm
    are missing or npm fails.
    """
    platform_package()  # fail early on unsupported machines
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise InstallError(f"'{tool}' not found on PATH: install Node.js >= 18 first")
    with _install_lock():
        if is_installed():
            return NODE_DIR
        verb = "ci" if (NODE_DIR / "package-lock.json").is_file() else "install"
        cmd = ["npm", verb, "--no-audit", "--no-fund", "--loglevel=error"]
        started = time.monotonic()
        proc = subprocess.run(
            cmd,
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "npm_config_update_notifier": "false"},
        )
        if proc.returncode != 0:
            raise InstallError(f"`{' '.join(cmd)}` failed in {NODE_DIR}:\n{proc.stderr.strip()}")
        if not is_installed():
            raise InstallError(f"npm finished but {platform_package()} is not in node_modules")
        if not quiet:
            print(f"installed surfpool in {time.monotonic() - started:.1f}s ({NODE_DIR})")
    return NODE_DIR


def main() -> int:
    """Console entry: install surfpool, print where it is."""
    try:
        node_dir = ensure_installed(quiet=False)
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"surfpool ready: {node_dir / 'node_modules' / platform_package()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
