"""anvil (Foundry's local Ethereum node) as a managed child process.

Everything the chain keeps lives in one run directory: ``anvil-state.json`` (loaded at start,
dumped every ``state_interval`` seconds and on a clean exit, so a SIGKILL loses at most that
much), ``anvil-cache/`` (anvil's own history files, which would otherwise go under ``$HOME``)
and ``anvil.log``. :meth:`AnvilChain.restart` brings the chain back on the same port from the
state file. The accounts are derived from a mnemonic, so their keys are known up front.
"""

from __future__ import annotations

import json
import logging
import platform
import random
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from eth_account import Account

from testnet.errors import AnvilError, AnvilNotFound

logger = logging.getLogger(__name__)

ANVIL_CHAIN_ID = 31337
# anvil's and Hardhat's well-known development mnemonic: its keys are public, never use it
# on a chain that holds anything of value.
TEST_MNEMONIC = "test test test test test test test test test test test junk"
DERIVATION_PATH = "m/44'/60'/0'/0/{index}"
STATE_FILE = "anvil-state.json"
CACHE_DIR = "anvil-cache"
LOG_FILE = "anvil.log"
HOST = "127.0.0.1"

_REPO_ROOT = Path(__file__).resolve().parents[1]
_PLATFORM_PACKAGES = {
    ("Linux", "x86_64"): "anvil-linux-amd64",
    ("Linux", "aarch64"): "anvil-linux-arm64",
    ("Darwin", "x86_64"): "anvil-darwin-amd64",
    ("Darwin", "arm64"): "anvil-darwin-arm64",
}
_POLL_INTERVAL = 0.02
_PROBE_TIMEOUT = 0.5
_LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class AnvilConfig:
    """How to run anvil: where its files go, its port (None: a free one) and its accounts."""

    run_dir: Path
    port: int | None = None
    host: str = HOST  # the address to listen on (another one inside a network lab)
    chain_id: int = ANVIL_CHAIN_ID
    mnemonic: str = TEST_MNEMONIC
    accounts: int = 10
    state_interval: int = 1  # seconds between state dumps
    binary: Path | None = None  # None: node_modules of this checkout, then PATH
    start_timeout: float = 10.0
    stop_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.port is not None and not 1 <= self.port <= 65535:
            raise AnvilError(f"anvil port {self.port} is not between 1 and 65535")
        if self.accounts < 1:
            raise AnvilError("anvil needs at least one account (accounts >= 1)")
        if self.state_interval < 1:
            raise AnvilError("state_interval is in whole seconds and must be at least 1")
        if self.start_timeout <= 0 or self.stop_timeout <= 0:
            raise AnvilError("start_timeout and stop_timeout must be positive (seconds)")


def find_anvil(binary: Path | None = None) -> Path:
    """The anvil executable: ``binary`` if given, else the npm package's native binary in
    this checkout's ``node_modules``, else ``anvil`` on PATH."""
    if binary is not None:
        candidates = [binary]
    else:
        candidates = []
        package = _PLATFORM_PACKAGES.get((platform.system(), platform.machine()))
        if package is not None:
            npm_bin = _REPO_ROOT / "node_modules" / "@foundry-rs" / package / "bin"
            candidates.append(npm_bin / "anvil")
        on_path = shutil.which("anvil")
        if on_path is not None:
            candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file():
            if not path.stat().st_mode & 0o111:
                raise AnvilNotFound(f"{path} is not executable; run `chmod +x {path}`")
            return path
    looked = ", ".join(str(p) for p in candidates) or "nowhere for this platform"
    raise AnvilNotFound(
        f"no anvil binary found (looked at {looked}); run `make setup` (npm ci installs "
        "@foundry-rs/anvil) or install Foundry and put anvil on PATH"
    )


_LISTEN_PORTS_FROM = 10_000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()
_ports = random.Random()


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now, for a process to listen on.

    The port is picked below the kernel's ephemeral range (Linux:
    ``/proc/sys/net/ipv4/ip_local_port_range``), where outgoing connections never take their
    local port: a port handed out here stays free until its process binds it, even while other
    processes open connections (a port from the ephemeral range could be taken as the local
    end of one). No port is handed out twice by one launcher. Elsewhere, the kernel picks.
    """
    try:
        first_ephemeral = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 0
    if first_ephemeral > _LISTEN_PORTS_FROM + 100:
        for _ in range(200):
            port = _ports.randrange(_LISTEN_PORTS_FROM, first_ephemeral)
            if port in _handed_out:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    _handed_out.add(port)
    return port


def derive_private_keys(mnemonic: str, n: int) -> list[str]:
    """The first ``n`` private keys (0x hex) of ``mnemonic`` on path m/44'/60'/0'/0/i."""
    Account.enable_unaudited_hdwallet_features()
    accounts = [
        Account.from_mnemonic(mnemonic, account_path=DERIVATION_PATH.format(index=i))
        for i in range(n)
    ]
    return [str(account.key.to_0x_hex()) for account in accounts]


class AnvilChain:
    """One anvil process (on 127.0.0.1 unless configured otherwise).

    Use it as a context manager so it is always stopped.
    """

    def __init__(self, config: AnvilConfig) -> None:
        self.config = config
        self._port: int | None = config.port
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def run_dir(self) -> Path:
        """Where the state file, cache and log live."""
        return self.config.run_dir

    @property
    def state_file(self) -> Path:
        """``anvil-state.json`` in the run directory."""
        return self.run_dir / STATE_FILE

    @property
    def log_file(self) -> Path:
        """``anvil.log`` in the run directory."""
        return self.run_dir / LOG_FILE

    @property
    def port(self) -> int:
        """The port anvil listens on (fixed at the first start, kept across restarts)."""
        if self._port is None:
            raise AnvilError("anvil has no port yet; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """The JSON-RPC URL, e.g. ``http://127.0.0.1:8545``."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running anvil, None when it is not running."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the anvil process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> AnvilChain:
        """Start anvil (loading the state file if there is one) and wait until RPC answers."""
        if self.running:
            raise AnvilError(f"anvil is already running at {self.url} (pid {self.pid})")
        self._terminate(kill_only=True)  # reap a process that exited on its own, close its log
        binary = find_anvil(self.config.binary)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = free_port(self.config.host)
        log = self.log_file.open("ab")
        log.write(f"--- medswarm: starting anvil on {self.url}\n".encode())
        log.flush()
        started = time.monotonic()
        try:
            self._process = subprocess.Popen(
                self._command(binary),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.run_dir,
            )
        except OSError as exc:
            log.close()
            raise AnvilError(f"could not run {binary}: {exc}") from exc
        self._log = log
        try:
            self._wait_until_ready()
        except BaseException:
            self._terminate(kill_only=True)
            raise
        logger.info(
            "anvil up at %s (pid %d) in %.2f s",
            self.url,
            self._process.pid,
            time.monotonic() - started,
        )
        return self

    def stop(self) -> None:
        """Stop anvil with SIGTERM so it dumps its state; SIGKILL after ``stop_timeout``."""
        self._terminate(kill_only=False)

    def kill(self) -> None:
        """SIGKILL anvil, as a crash would: state since the last periodic dump is lost."""
        self._terminate(kill_only=True)

    def restart(self) -> None:
        """Stop anvil if it runs, then start it again on the same port from the state file."""
        self.stop()
        self.start()

    def private_keys(self, n: int) -> list[str]:
        """Keys (0x hex) of the first ``n`` accounts, checked against the accounts anvil funds."""
        if not 1 <= n <= self.config.accounts:
            raise AnvilError(
                f"asked for {n} keys but anvil is configured with {self.config.accounts} "
                "accounts; raise AnvilConfig.accounts"
            )
        if not self.running:
            raise AnvilError("anvil is not running; call start() before private_keys()")
        keys = derive_private_keys(self.config.mnemonic, n)
        served = [str(a).lower() for a in self._rpc("eth_accounts", [])]
        for index, key in enumerate(keys):
            address = Account.from_key(key).address
            if index >= len(served) or served[index] != address.lower():
                raise AnvilError(
                    f"anvil's account {index} is not {address} derived from the mnemonic; "
                    f"the state file {self.state_file} may come from another chain: delete it"
                )
            if int(self._rpc("eth_getBalance", [address, "latest"]), 16) == 0:
                raise AnvilError(f"anvil's account {index} ({address}) holds no ether")
        return keys

    def __enter__(self) -> AnvilChain:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self, binary: Path) -> list[str]:
        c = self.config
        return [
            str(binary),
            "--host", c.host,
            "--port", str(self.port),
            "--chain-id", str(c.chain_id),
            "--mnemonic", c.mnemonic,
            "--accounts", str(c.accounts),
            "--state", str(self.state_file),
            "--state-interval", str(c.state_interval),
            "--cache-path", str(self.run_dir / CACHE_DIR),
            "--silent",
        ]  # fmt: skip

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.config.start_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise AnvilError(
                    f"anvil exited with code {code} while starting on {self.url}; "
                    f"last lines of {self.log_file}:\n{self._log_tail()}"
                )
            try:
                chain_id = int(self._rpc("eth_chainId", []), 16)
            except (OSError, ValueError):
                chain_id = None
            if chain_id is not None:
                if chain_id != self.config.chain_id:
                    raise AnvilError(
                        f"something at {self.url} serves chain id {chain_id}, not "
                        f"{self.config.chain_id}; is another node on port {self.port}?"
                    )
                return
            if time.monotonic() >= deadline:
                raise AnvilError(
                    f"anvil did not answer JSON-RPC at {self.url} within "
                    f"{self.config.start_timeout:g} s; last lines of {self.log_file}:\n"
                    f"{self._log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _terminate(self, *, kill_only: bool) -> None:
        process, self._process = self._process, None
        try:
            if process is not None and process.poll() is None:
                if not kill_only:
                    process.terminate()
                    try:
                        process.wait(self.config.stop_timeout)
                    except subprocess.TimeoutExpired:
                        logger.warning(
                            "anvil (pid %d) ignored SIGTERM for %g s; killing it",
                            process.pid,
                            self.config.stop_timeout,
                        )
                if process.poll() is None:
                    process.kill()
                    process.wait(self.config.stop_timeout)
                logger.info("anvil (pid %d) stopped, exit code %s", process.pid, process.returncode)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _rpc(self, method: str, params: list[Any]) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        request = urllib.request.Request(
            self.url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=_PROBE_TIMEOUT) as response:
            reply = json.loads(response.read())
        if "error" in reply:
            raise AnvilError(f"anvil answered {method} with an error: {reply['error']}")
        return reply["result"]

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(log is empty)"
