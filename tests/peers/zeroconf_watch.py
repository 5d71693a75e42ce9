#!/usr/bin/env python3
"""An mDNS peer plantwire did not write: python-zeroconf browses _plantwire._tcp.local. and prints
one JSON line per change. For each resolved instance it also opens TLS to the announced address
and reports the SHA-256 fingerprint of the certificate actually served there.

usage: zeroconf_watch.py SECONDS   (exits after SECONDS, or when stdin closes)
"""
import hashlib
import json
import socket
import ssl
import sys
import threading

from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

TYPE = "_plantwire._tcp.local."


def served_fingerprint(addresses, port):
    ctx = ssl.create_default_context()
    # We only want the certificate to compare its fingerprint; trust is what the test checks.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for addr in addresses:
        try:
            with socket.create_connection((addr, port), timeout=5) as raw:
                with ctx.wrap_socket(raw) as tls:
                    der = tls.getpeercert(binary_form=True)
                    digest = hashlib.sha256(der).hexdigest().upper()
                    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
        except OSError:
            continue
    return None


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def on_change(zeroconf, service_type, name, state_change):
    if state_change is ServiceStateChange.Removed:
        emit({"event": "removed", "name": name})
        return
    info = zeroconf.get_service_info(service_type, name, timeout=5000)
    if info is None:
        return
    addresses = info.parsed_scoped_addresses(IPVersion.All)
    txt = {k.decode(): (v.decode() if v is not None else None) for k, v in info.properties.items()}
    emit({
        "event": "added" if state_change is ServiceStateChange.Added else "updated",
        "name": name,
        "port": info.port,
        "addresses": addresses,
        "txt": txt,
        "served_fp": served_fingerprint([a for a in addresses if "%" not in a], info.port),
    })


def main():
    seconds = float(sys.argv[1])
    zc = Zeroconf(ip_version=IPVersion.All)
    ServiceBrowser(zc, TYPE, handlers=[on_change])
    emit({"event": "browsing"})
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait(seconds)
    zc.close()


if __name__ == "__main__":
    main()
