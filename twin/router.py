"""The router twin: passthrough Routes served for real, by SNI, as the OpenShift router does.

One TLS-passthrough listener per twin on loopback. For each connection it reads the ClientHello's
server name, finds the admitted Route with that host, follows ``spec.to`` to its Service and the
Service's selector to a Ready pod, and splices the connection to the address that pod's workload
registered for the target port (:data:`ENDPOINTS`). TLS stays end to end between the client and
the pod (the router never sees a key), so clients verify the pod's own certificate against their
CA, exactly as through a real passthrough route. Routes of other terminations are refused with a
log line: the twin's router only does passthrough.

Workloads that serve (the KBS) call ``ENDPOINTS.register(namespace, pod, container_port, addr)``
when they start and ``unregister`` when they stop.
"""

import logging
import socket
import struct
import threading

log = logging.getLogger("twin.router")


class Endpoints:
    """(namespace, pod, container port) -> (addr, port) of the process serving it."""

    def __init__(self):
        self._map = {}
        self._lock = threading.Lock()

    def register(self, namespace, pod, port, addr):
        with self._lock:
            self._map[(namespace, pod, int(port))] = addr

    def unregister(self, namespace, pod):
        with self._lock:
            for key in [k for k in self._map if k[:2] == (namespace, pod)]:
                self._map.pop(key)

    def get(self, namespace, pod, port):
        with self._lock:
            return self._map.get((namespace, pod, int(port)))


ENDPOINTS = Endpoints()


class ClientHelloError(ValueError):
    pass


def read_client_hello(sock, limit=65536):
    """(bytes read, server name or None): the first TLS record(s) of a connection, parsed for SNI."""
    data = b""

    def need(n):
        nonlocal data
        while len(data) < n:
            chunk = sock.recv(max(4096, n - len(data)))
            if not chunk:
                raise ClientHelloError("connection closed before the ClientHello was complete")
            data += chunk
            if len(data) > limit:
                raise ClientHelloError("ClientHello too large")

    need(5)
    if data[0] != 0x16:
        raise ClientHelloError("not a TLS handshake (plain HTTP sent to a passthrough route?)")
    # The handshake message may span records; gather until the ClientHello is whole.
    handshake = b""
    offset = 0
    while True:
        need(offset + 5)
        length = struct.unpack("!H", data[offset + 3:offset + 5])[0]
        need(offset + 5 + length)
        handshake += data[offset + 5:offset + 5 + length]
        offset += 5 + length
        if len(handshake) >= 4:
            total = int.from_bytes(handshake[1:4], "big") + 4
            if len(handshake) >= total:
                break
    if handshake[0] != 1:
        raise ClientHelloError("first handshake message is not a ClientHello")
    return data, _server_name(handshake[4:])


def _server_name(hello):
    try:
        pos = 2 + 32  # version, random
        pos += 1 + hello[pos]  # session id
        pos += 2 + struct.unpack("!H", hello[pos:pos + 2])[0]  # cipher suites
        pos += 1 + hello[pos]  # compression methods
        if pos >= len(hello):
            return None
        end = pos + 2 + struct.unpack("!H", hello[pos:pos + 2])[0]
        pos += 2
        while pos + 4 <= end:
            ext_type, ext_len = struct.unpack("!HH", hello[pos:pos + 4])
            pos += 4
            if ext_type == 0:  # server_name
                list_end = pos + 2 + struct.unpack("!H", hello[pos:pos + 2])[0]
                item = pos + 2
                while item + 3 <= list_end:
                    name_type = hello[item]
                    name_len = struct.unpack("!H", hello[item + 1:item + 3])[0]
                    if name_type == 0:
                        return hello[item + 3:item + 3 + name_len].decode("ascii").lower()
                    item += 3 + name_len
                return None
            pos += ext_len
    except (IndexError, struct.error, UnicodeDecodeError):
        raise ClientHelloError("malformed ClientHello")
    return None


class Router:
    def __init__(self, manager):
        self.routes = manager.informer("route.openshift.io/v1", "routes")
        self.services = manager.informer("v1", "services")
        self.pods = manager.informer("v1", "pods")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = self.sock.getsockname()

    def start(self):
        threading.Thread(target=self._accept, name="router", daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="router-conn", daemon=True).start()

    def backend(self, host):
        """(addr, why): where a connection for ``host`` goes, or None and the reason."""
        route = next((r for r in self.routes.items()
                      if (r.get("spec") or {}).get("host", "").lower() == host
                      and any(c.get("type") == "Admitted" and c.get("status") == "True"
                              for i in ((r.get("status") or {}).get("ingress") or [])
                              for c in i.get("conditions") or [])), None)
        if route is None:
            return None, f"no admitted route has host {host}"
        namespace = route["metadata"]["namespace"]
        termination = ((route["spec"].get("tls") or {}).get("termination") or "").lower()
        if termination != "passthrough":
            return None, (f"route {namespace}/{route['metadata']['name']} has termination "
                          f"{termination or 'none (plain HTTP)'}; the twin's router serves passthrough routes only")
        to = route["spec"].get("to") or {}
        service = self.services.get(to.get("name"), namespace)
        if service is None:
            return None, f"route {namespace}/{route['metadata']['name']}: service {to.get('name')} does not exist"
        target = (route["spec"].get("port") or {}).get("targetPort")
        ports = service["spec"].get("ports") or []
        port = next((p for p in ports if target in (p.get("name"), p.get("port"), p.get("targetPort"))), None)
        if port is None and len(ports) == 1 and target is None:
            port = ports[0]
        if port is None:
            return None, f"service {namespace}/{service['metadata']['name']} has no port {target!r}"
        container_port = port.get("targetPort", port.get("port"))
        selector = service["spec"].get("selector") or {}
        for pod in self.pods.items():
            meta = pod["metadata"]
            if meta.get("namespace") != namespace or meta.get("deletionTimestamp"):
                continue
            if not selector or any(meta.get("labels", {}).get(k) != v for k, v in selector.items()):
                continue
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (pod.get("status") or {}).get("conditions") or [])
            if not ready:
                continue
            if isinstance(container_port, str):
                numbers = [p.get("containerPort") for c in pod["spec"]["containers"] for p in c.get("ports") or []
                           if p.get("name") == container_port]
                if not numbers:
                    continue
                number = numbers[0]
            else:
                number = container_port
            addr = ENDPOINTS.get(namespace, meta["name"], number)
            if addr:
                return addr, None
        return None, f"service {namespace}/{service['metadata']['name']} has no ready endpoint serving port {container_port}"

    def _serve(self, client):
        upstream = None
        try:
            client.settimeout(30)
            first, host = read_client_hello(client)
            if not host:
                log.info("router: connection without SNI refused (passthrough needs the server name)")
                return
            addr, why = self.backend(host)
            if addr is None:
                log.info("router: %s: %s", host, why)
                return
            upstream = socket.create_connection(addr, timeout=30)
            upstream.sendall(first)
            client.settimeout(None)
            upstream.settimeout(None)
            pump = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            pump.start()
            _pipe(client, upstream)
            pump.join(timeout=60)
        except (ClientHelloError, OSError) as exc:
            log.info("router: connection dropped: %s", exc)
        finally:
            for s in (client, upstream):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass


def _pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
