"""A password-protected Mosquitto for the Python integration tests: one
loopback listener, no anonymous clients, no persistence, and one account,
the proxy's (USERNAME / PASSWORD).

The directory must be readable by Mosquitto's own user (chmod 755): started
as root, Mosquitto drops to that user and must still read its files."""
import os
import shutil
import subprocess

from netutil import free_port

USERNAME, PASSWORD = "proxy", "proxy-secret"


def mosquitto_binary():
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def write_passwd(directory):
    """DIRECTORY/passwd holding the proxy's account, hashed; its path."""
    passwd = os.path.join(directory, "passwd")
    with open(passwd, "w") as f:
        f.write(f"{USERNAME}:{PASSWORD}\n")
    subprocess.run(["mosquitto_passwd", "-U", passwd], check=True)
    return passwd


def start_mosquitto(directory, extra=(), log=None, file_mode=None, line_buffered=False):
    """Writes DIRECTORY/passwd and DIRECTORY/mosquitto.conf (a listener on a
    free loopback port, the account, then the `extra` config lines) and starts
    Mosquitto; returns (Popen, port) without waiting for the port.

    log: an open file for its stdout and stderr (default: both discarded).
    file_mode: chmod the passwd and config files to it.
    line_buffered: run it under `stdbuf -oL`, so the log can be read as it grows."""
    port = free_port()
    passwd = write_passwd(directory)
    if file_mode is not None:
        os.chmod(passwd, file_mode)
    conf = os.path.join(directory, "mosquitto.conf")
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous false", f"password_file {passwd}", "persistence false",
             *extra]
    with open(conf, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    if file_mode is not None:
        os.chmod(conf, file_mode)
    argv = (["stdbuf", "-oL"] if line_buffered else []) + [mosquitto_binary(), "-c", conf]
    if log is None:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    return process, port
