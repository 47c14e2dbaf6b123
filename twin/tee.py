"""Simulated confidential-computing hardware: what TDX/SEV-SNP CPUs and CC-mode GPUs sign, and who can check it.

Real evidence is binary (a TDX quote, an SNP report, an SPDM report) signed by a key whose
certificate chains to the vendor's root (Intel PCK, AMD VCEK, NVIDIA device certificate). The twin
keeps the trust structure and drops the byte layouts:

* Each vendor (``intel``, ``amd``, ``nvidia``) has a root key. It is derived from the vendor's name,
  so every twin and every process agrees on it, as every verifier agrees on the vendor roots it
  embeds. Only this module signs with it.
* Each chip has its own key, certified by its vendor's root (the PCK/VCEK/device-certificate
  stand-in); evidence is signed by the chip key, and a verifier checks chip certificate -> root, then
  signature -> evidence.
* Evidence bodies are JSON with the field names Trustee's verifiers export as claims (hex strings
  where the hardware reports bytes), so the verifier side stays a thin layer.

A confidential VM is launched on a host (:func:`launch`): the host fixes what the hardware
measures (firmware, kernel, command line from the guest image of the OpenShift release) and binds
the initdata digest into MRCONFIGID (TDX) or HOSTDATA (SNP) at launch; the guest later asks for
evidence over its own ``report_data``. Nothing the guest does afterwards changes what was bound at
launch, which is what lets a verifier catch initdata sent that is not the one the VM booted with.

:func:`reference_values` is the twin's veritas: the values a correct guest of a given release
measures to, in veritas's list format.
"""

import base64
import datetime
import hashlib
import json

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TDX_TEE_TYPE = "81000000"
INTEL_QE_VENDOR_ID = "939a7233f79c4ca9940a0db3957f0607"
# x87, SSE, AVX, AVX-512, PKRU and AMX enabled: what veritas's --hw-xfam-allow for all of them gives.
DEFAULT_XFAM = "e702060000000000"
REFERENCE_EXPIRATION = "2099-12-31T00:00:00Z"
VENDORS = ("intel", "amd", "nvidia")


class EvidenceError(ValueError):
    """Evidence that does not verify; the message says which check failed."""


# -- vendors and chips ------------------------------------------------------------------------------


def _derived_key(label: str):
    scalar = int.from_bytes(hashlib.sha256(("confidential-gpu-twin/" + label).encode()).digest(), "big")
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 group order
    return ec.derive_private_key(scalar % (order - 1) + 1, ec.SECP256R1())


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "twin hardware"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


_ROOTS = {}


def vendor_root(vendor: str):
    """(private key, certificate) of a vendor's root; the certificate is what verifiers embed."""
    if vendor not in VENDORS:
        raise ValueError(f"unknown vendor {vendor!r}; known: {', '.join(VENDORS)}")
    if vendor not in _ROOTS:
        key = _derived_key(f"root/{vendor}")
        epoch = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(_name(f"twin {vendor} root"))
                .issuer_name(_name(f"twin {vendor} root")).public_key(key.public_key())
                .serial_number(int.from_bytes(hashlib.sha256(vendor.encode()).digest()[:8], "big"))
                .not_valid_before(epoch).not_valid_after(epoch + datetime.timedelta(days=365 * 50))
                .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
                .sign(key, hashes.SHA256()))
        _ROOTS[vendor] = (key, cert)
    return _ROOTS[vendor]


def vendor_root_pem(vendor: str) -> str:
    return vendor_root(vendor)[1].public_bytes(serialization.Encoding.PEM).decode()


class Chip:
    """One piece of hardware with its own attestation key, certified by its vendor."""

    def __init__(self, vendor: str, serial: str, attributes: dict = None):
        self.vendor = vendor
        self.serial = serial
        self.key = _derived_key(f"chip/{vendor}/{serial}")
        root_key, root_cert = vendor_root(vendor)
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(_name(f"twin {vendor} chip {serial}"))
                   .issuer_name(root_cert.subject).public_key(self.key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=365))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        self.cert_pem = builder.sign(root_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
        self.attributes = dict(attributes or {})

    def sign(self, body: dict) -> dict:
        """Signed evidence: the body's exact bytes, the chip's signature over them, its certificate."""
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        signature = self.key.sign(raw, ec.ECDSA(hashes.SHA256()))
        return {"body": _b64(raw), "signature": _b64(signature), "certificate": self.cert_pem}


def verify_signed(vendor: str, signed: dict, what: str) -> dict:
    """Check chip certificate -> vendor root, signature -> body; return the body."""
    try:
        cert = x509.load_pem_x509_certificate(signed["certificate"].encode())
        raw = base64.b64decode(signed["body"], validate=True)
        signature = base64.b64decode(signed["signature"], validate=True)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EvidenceError(f"{what}: malformed signed evidence ({exc})")
    root = vendor_root(vendor)[1]
    try:
        root.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    except InvalidSignature:
        raise EvidenceError(f"{what}: the signing certificate {cert.subject.rfc4514_string()!r} does not chain to "
                            f"the {vendor} root")
    now = datetime.datetime.now(datetime.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise EvidenceError(f"{what}: the signing certificate is outside its validity period")
    try:
        cert.public_key().verify(signature, raw, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise EvidenceError(f"{what}: signature does not verify (evidence altered after signing)")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise EvidenceError(f"{what}: body is not JSON ({exc})")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _h(*parts, size=48) -> str:
    digest = hashlib.sha384("|".join(str(p) for p in parts).encode()).digest()
    return (digest * 2)[:size].hex()


def extend(register: str, digest: str) -> str:
    """RTMR extension: new = SHA-384(old || digest)."""
    return hashlib.sha384(bytes.fromhex(register) + bytes.fromhex(digest)).hexdigest()


# The newest TDX TCB level the simulated Intel PCS knows; older platforms are OutOfDate.
TDX_TCB_CURRENT = "0b010300000000000000000000000000"


def tdx_tcb_status(tcb_svn_hex: str) -> str:
    """The TCB status Intel's collateral (PCS) gives a TDX platform's TCB SVN (simulated)."""
    try:
        svn = bytes.fromhex(tcb_svn_hex)
    except (TypeError, ValueError):
        return "Revoked"
    current = bytes.fromhex(TDX_TCB_CURRENT)
    if len(svn) != len(current):
        return "Revoked"
    return "UpToDate" if all(a >= b for a, b in zip(svn, current)) else "OutOfDate"


# -- the guest image a release ships, and what it measures to --------------------------------------

GPU_CMDLINE_SUFFIX = " devtmpfs.mount=0"


def guest_image(ocp_version: str, gpu: bool = True, cmdline_extra: str = "") -> dict:
    """Firmware, kernel, initrd and command line of the kata guest of an OpenShift release (simulated)."""
    cmdline = "tsc=reliable no_timer_check console=hvc0 panic=1 selinux=0 cgroup_no_v1=all"
    if gpu:
        cmdline += GPU_CMDLINE_SUFFIX
    if cmdline_extra:
        cmdline += " " + cmdline_extra
    return {
        "ocp_version": ocp_version,
        "firmware": _h("ovmf", ocp_version),
        "kernel": _h("vmlinuz", ocp_version),
        "initrd": _h("initrd", ocp_version, "gpu" if gpu else "cpu"),
        "cmdline": cmdline,
    }


def tdx_measurements(image: dict) -> dict:
    tdvfkernel = image["kernel"]
    tdvfkernelparams = hashlib.sha384(image["cmdline"].encode()).hexdigest()
    rtmr_1 = extend("00" * 48, tdvfkernel)
    rtmr_2 = extend(extend("00" * 48, tdvfkernelparams), image["initrd"])
    return {"mr_td": image["firmware"], "rtmr_0": _h("tdvf-config", image["ocp_version"]),
            "rtmr_1": rtmr_1, "rtmr_2": rtmr_2, "rtmr_3": "00" * 48,
            "tdvfkernel": tdvfkernel, "tdvfkernelparams": tdvfkernelparams}


def snp_measurement(image: dict, vcpus: int = 1) -> str:
    # SNP measures firmware, kernel, initrd and command line together (QEMU kernel-hashes=on).
    return _h("snp-launch", image["firmware"], image["kernel"], image["initrd"], image["cmdline"], vcpus)


def snp_tcb(host_spec: dict) -> dict:
    """The reported TCB of an SNP host: from its profile (tee.tcb) or the twin's current firmware."""
    tcb = {"bootloader": 9, "microcode": 72, "snp": 22, "tee": 0}
    tcb.update((host_spec.get("tee") or {}).get("tcb") or {})
    return tcb


def reference_values(ocp_versions, tee: str, gpu: bool = True, cmdline_extra: str = "",
                     host_spec: dict = None, xfam: str = DEFAULT_XFAM) -> list:
    """What veritas computes for these releases, as its ``reference-values.json`` list.

    Values of several releases are merged per name (lists), as during an upgrade. SNP TCB values
    are only added when ``host_spec`` is given (veritas does not provide them either).
    """
    if isinstance(ocp_versions, str):
        ocp_versions = [ocp_versions]
    values = {}

    def add(name, value):
        values.setdefault(name, [])
        if value not in values[name]:
            values[name].append(value)

    for version in ocp_versions:
        image = guest_image(version, gpu=gpu, cmdline_extra=cmdline_extra)
        if tee == "tdx":
            m = tdx_measurements(image)
            for name in ("mr_td", "rtmr_1", "rtmr_2", "tdvfkernel", "tdvfkernelparams"):
                add(name, m[name])
        elif tee == "snp":
            add("snp_launch_measurement", snp_measurement(image))
        else:
            raise ValueError(f"tee {tee!r}: valid values are tdx, snp")
    if tee == "tdx":
        add("xfam", xfam)
    if tee == "snp" and host_spec is not None:
        tcb = snp_tcb(host_spec)
        for name, key in (("snp_bootloader", "bootloader"), ("snp_microcode", "microcode"),
                          ("snp_snp_svn", "snp"), ("snp_tee_svn", "tee")):
            add(name, tcb[key])
        # Compared with == by the SNP configuration rule: scalars, never lists.
        tee_spec = host_spec.get("tee") or {}
        values.update({"snp_smt_enabled": bool(tee_spec.get("smt", True)),
                       "snp_tsme_enabled": bool(tee_spec.get("tsme", False)),
                       "snp_guest_abi_major": 1, "snp_guest_abi_minor": 55,
                       "snp_single_socket": False, "snp_smt_allowed": True})
    return [{"name": n, "expiration": REFERENCE_EXPIRATION, "value": v} for n, v in values.items()]


# -- launching a confidential VM and asking it for evidence ----------------------------------------


def runtime_data_digest(runtime_data: dict, size: int = 64) -> bytes:
    """The report_data a guest binds its KBS runtime data with: SHA-384 of its canonical JSON, zero-padded."""
    raw = json.dumps(runtime_data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha384(raw).digest().ljust(size, b"\0")


def gpu_nonce(runtime_data: dict) -> str:
    """The nonce a guest hands its GPU for an SPDM report over the same runtime data (32 bytes)."""
    raw = json.dumps(runtime_data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()


class GuestVM:
    """A confidential VM on ``host_spec`` (a profile node), booted from the guest image of ``ocp_version``.

    ``init_data_binding`` is what the host wrote into MRCONFIGID/HOSTDATA at launch (the TEE binding
    of the initdata digest), or None for a VM launched without initdata (all zeros).
    """

    def __init__(self, host_spec: dict, ocp_version: str, init_data_binding: bytes = None, gpus=None,
                 debug: bool = False, cmdline_extra: str = ""):
        self.host = host_spec
        self.tee = (host_spec.get("tee") or {}).get("type")
        if self.tee not in ("tdx", "snp"):
            raise ValueError(f"host {host_spec.get('name')!r} has no TEE (tee.type={self.tee!r}); "
                             "a confidential VM needs tdx or snp")
        if not (host_spec.get("tee") or {}).get("bios_enabled", True):
            raise ValueError(f"host {host_spec.get('name')!r}: the TEE is disabled in the BIOS")
        size = 48 if self.tee == "tdx" else 32
        binding = bytes(init_data_binding or b"")
        if init_data_binding is not None and len(binding) != size:
            raise ValueError(f"init_data_binding: {len(binding)} bytes; the {self.tee} register takes {size}")
        self.init_data_binding = binding if init_data_binding is not None else b"\0" * size
        self.image = guest_image(ocp_version, gpu=bool(gpus), cmdline_extra=cmdline_extra)
        self.gpus = list(gpus or [])
        self.debug = debug
        vendor = "intel" if self.tee == "tdx" else "amd"
        self.chip = Chip(vendor, f"{host_spec.get('name', 'host')}")

    # CPU evidence ------------------------------------------------------------------------------

    def evidence(self, runtime_data: dict) -> dict:
        """Primary evidence over runtime_data, as the attestation agent sends it in tee-evidence."""
        report_data = runtime_data_digest(runtime_data).hex()
        if self.tee == "tdx":
            return self._tdx(report_data)
        return self._snp(report_data)

    def _tdx(self, report_data):
        m = tdx_measurements(self.image)
        tee = self.host.get("tee") or {}
        attributes = 0x1 if self.debug else 0x0  # bit 0: DEBUG
        attributes |= 1 << 28  # SEPT_VE_DISABLE
        quote = {
            "header": {"version": "0400", "att_key_type": "0200", "tee_type": TDX_TEE_TYPE,
                       "vendor_id": INTEL_QE_VENDOR_ID},
            "body": {
                "tcb_svn": tee.get("tcb_svn", TDX_TCB_CURRENT),
                "mr_seam": _h("tdx-module", tee.get("module_version", "1.5.16")),
                "mrsigner_seam": "00" * 48,
                "seam_attributes": "00" * 8,
                "td_attributes": attributes.to_bytes(8, "little").hex(),
                "xfam": tee.get("xfam", DEFAULT_XFAM),
                "mr_td": m["mr_td"],
                "mr_config_id": self.init_data_binding.hex(),
                "mr_owner": "00" * 48,
                "mr_owner_config": "00" * 48,
                "rtmr_0": m["rtmr_0"], "rtmr_1": m["rtmr_1"], "rtmr_2": m["rtmr_2"], "rtmr_3": m["rtmr_3"],
                "report_data": report_data,
            },
        }
        events = [
            {"imr": 1, "type_name": "EV_EFI_BOOT_SERVICES_APPLICATION",
             "details": {"device_paths": ["File(kernel)"]},
             "digests": [{"alg": "SHA-384", "digest": m["tdvfkernel"]}]},
            {"imr": 2, "type_name": "EV_EVENT_TAG", "details": {"string": "LOADED_IMAGE::LoadOptions"},
             "digests": [{"alg": "SHA-384", "digest": m["tdvfkernelparams"]}]},
            {"imr": 2, "type_name": "EV_EVENT_TAG", "details": {"string": "Linux initrd"},
             "digests": [{"alg": "SHA-384", "digest": self.image["initrd"]}]},
        ]
        signed = self.chip.sign(quote)
        return {"quote": signed, "cc_eventlog": _b64(json.dumps(events).encode())}

    def _snp(self, report_data):
        tee = self.host.get("tee") or {}
        tcb = snp_tcb(self.host)
        report = {
            "version": 3,
            "guest_svn": 0,
            "policy": {"abi_major": 1, "abi_minor": 55, "smt_allowed": True, "migrate_ma": False,
                       "debug_allowed": self.debug, "single_socket": False},
            "platform_info": {"smt_enabled": bool(tee.get("smt", True)), "tsme_enabled": bool(tee.get("tsme", False))},
            "measurement": snp_measurement(self.image),
            "host_data": self.init_data_binding.hex(),
            "report_data": report_data,
            "reported_tcb": tcb,
            "chip_id": hashlib.sha512(self.chip.serial.encode()).hexdigest(),
        }
        return {"attestation_report": self.chip.sign(report)}

    # GPU evidence ------------------------------------------------------------------------------

    def additional_evidence(self, runtime_data: dict):
        """The ``additional_evidence`` JSON string for the VM's GPUs (None without GPUs)."""
        if not self.gpus:
            return None
        nonce = gpu_nonce(runtime_data)
        devices = []
        for index, gpu in enumerate(self.gpus):
            chip = Chip("nvidia", f"{self.host.get('name', 'host')}-{gpu.get('pci_address', index)}")
            report = {
                "nonce": nonce,
                "model": gpu["model"],
                "device_id": gpu.get("device_id"),
                "architecture": str(gpu.get("architecture", "unknown")).upper(),
                "uuid": "GPU-" + hashlib.sha256(chip.serial.encode()).hexdigest()[:32],
                "vbios_version": gpu.get("vbios", "96.00.00.00.00"),
                "driver_version": gpu.get("driver_version", "580.95.05"),
                "cc_capable": bool(gpu.get("cc_capable")),
                # The mode the device is in now (cc-manager's switch; twin.guest passes the host's GPU),
                # "on" for a CC-capable profile GPU given without one.
                "cc_mode": gpu.get("cc_mode", "on") if gpu.get("cc_capable") else "off",
                "measurements": {str(i): _h("gpu-measure", gpu["model"], gpu.get("vbios"), i) for i in range(4)},
                # How the verifier's stand-in for NRAS judges this device (see twin.kbs.verifier).
                "profile_verdict": dict(gpu.get("nras") or {}),
            }
            devices.append({"evidence": chip.sign(report), "arch": report["architecture"]})
        return json.dumps({"nvidia": {"class": "gpu", "evidence_list": devices}}, sort_keys=True)


def launch(host_spec: dict, ocp_version: str, initdata_toml: str = None, gpus=None, **kwargs) -> GuestVM:
    """Launch a VM the way the kata shim does: the initdata digest, TEE-bound, goes into the hardware.

    The register value follows upstream (``twin.initdata``: kata ``govmm/qemu/qemu.go``
    ``adjustProperLength``), never the collection's code, so a collection bug shows as a mismatch.
    """
    binding = None
    if initdata_toml is not None:
        from . import initdata

        tee = (host_spec.get("tee") or {}).get("type")
        if tee not in initdata.REGISTER_BYTES:
            raise ValueError(f"host {host_spec.get('name')!r} has no TEE (tee.type={tee!r}) to bind initdata to")
        binding = initdata.binding(initdata_toml, tee)
    if gpus is None:
        gpus = host_spec.get("gpus") or []
    return GuestVM(host_spec, ocp_version, binding, gpus=gpus[:1], **kwargs)


def main(argv=None):
    """``python -m twin.tee reference-values --profile P``: the twin's veritas, as a reference-values.json list.

    ``python -m twin.tee tee --profile P`` prints the profile's TEE type.
    """
    import argparse
    import sys

    from . import profile as profiles

    parser = argparse.ArgumentParser(prog="twin.tee")
    sub = parser.add_subparsers(dest="command", required=True)
    rv = sub.add_parser("reference-values", help="reference values of a profile's guest image (JSON list)")
    rv.add_argument("--profile", default="default")
    rv.add_argument("--ocp-version", action="append", help="release(s); default: the profile's")
    rv.add_argument("--no-gpu", action="store_true", help="the CPU-only guest image")
    rv.add_argument("--kernel-cmdline-extra", default="",
                    help="kernel parameters the pods add (e.g. agent.guest_components_rest_api=all): they are "
                         "measured, as veritas --kernel-cmdline takes the whole command line")
    sub.add_parser("tee", help="the TEE type of a profile's TEE nodes (tdx or snp)").add_argument(
        "--profile", default="default")
    args = parser.parse_args(argv)
    spec = profiles.load(args.profile)
    node = next((n for n in spec["nodes"] if (n.get("tee") or {}).get("type")), None)
    if node is None:
        print(f"profile {args.profile} has no TEE node", file=sys.stderr)
        return 1
    if args.command == "tee":
        print(node["tee"]["type"])
        return 0
    values = reference_values(args.ocp_version or [spec["openshift"]["version"]], node["tee"]["type"],
                              gpu=not args.no_gpu, host_spec=node, cmdline_extra=args.kernel_cmdline_extra)
    print(json.dumps(values, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
