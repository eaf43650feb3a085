"""UKI assembly: section order (objdump), contents, PCR 11 signatures, signing and reproducibility."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import imager_assets as assets
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.errors import InvalidInput
from imagefactory.imager import pcr, pe
from imagefactory.imager.pesign import SecureBootSigner
from imagefactory.imager.uki import build_uki, kernel_version, os_release
from imagefactory.platforms import Arch
from imagefactory.profile import OutputKind
from imagefactory.versions import TalosVersion

CMDLINE = "console=ttyS0 talos.platform=metal panic=-1"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not assets.STUB.is_file():
        pytest.skip("systemd-boot-efi is not installed")
    return tmp_path_factory.mktemp("uki")


@pytest.fixture(scope="module")
def inputs(work: Path) -> tuple[Path, Path]:
    return assets.kernel(work), assets.marker_initramfs(work)


def _build(work: Path, inputs: tuple[Path, Path], version: str, name: str, **kw: object) -> Path:
    kernel, initramfs = inputs
    out = work / name
    build_uki(
        stub=assets.STUB,
        kernel=kernel,
        initramfs=initramfs,
        cmdline=CMDLINE,
        version=TalosVersion.parse(version),
        arch=Arch.AMD64,
        out=out,
        epoch=assets.EPOCH,
        **kw,  # type: ignore[arg-type]
    )
    return out


def _objdump_sections(path: Path) -> list[str]:
    text = subprocess.run(["objdump", "-h", str(path)], capture_output=True, text=True, check=True)
    return re.findall(r"^\s+\d+\s+(\S+)\s", text.stdout, re.MULTILINE)


STUB_SECTIONS = [".text", ".reloc", ".data", ".dynamic", ".rela", ".dynsym", ".sbat", ".sdmagic"]


def test_sections_before_profiles_legacy_order(work: Path, inputs: tuple[Path, Path]) -> None:
    uki = _build(work, inputs, "1.9.0", "v19.efi")
    assert _objdump_sections(uki) == [
        *STUB_SECTIONS,
        ".osrel",
        ".cmdline",
        ".initrd",
        ".uname",
        ".linux",
    ]


def test_sections_with_iso_profiles(work: Path, inputs: tuple[Path, Path]) -> None:
    uki = _build(work, inputs, "1.11.0", "v111-iso.efi", kind=OutputKind.ISO)
    assert _objdump_sections(uki) == [
        *STUB_SECTIONS,
        ".osrel", ".cmdline", ".uname", ".linux", ".initrd", ".profile", ".profile", ".cmdline",
    ]  # fmt: skip


def test_uki_output_has_only_main_profile(work: Path, inputs: tuple[Path, Path]) -> None:
    uki = _build(work, inputs, "1.12.0", "v112-uki.efi", kind=OutputKind.UKI)
    assert _objdump_sections(uki)[-1] == ".profile"
    assert pe.read_section(uki, ".profile") == b"ID=main"


def test_section_contents(work: Path, inputs: tuple[Path, Path]) -> None:
    uki = _build(work, inputs, "1.11.0", "contents.efi", kind=OutputKind.IMAGE)
    kernel, initramfs = inputs
    data = uki.read_bytes()
    headers = pe.parse(data).sections
    profiles = [
        data[h.raw_pointer : h.raw_pointer + h.virtual_size]
        for h in headers
        if h.name == ".profile"
    ]
    cmdlines = [
        data[h.raw_pointer : h.raw_pointer + h.virtual_size]
        for h in headers
        if h.name == ".cmdline"
    ]
    assert profiles == [b"ID=main", b"ID=reset-maintenance\nTITLE=Reset to maintenance mode"]
    assert cmdlines == [
        CMDLINE.encode(),
        f"{CMDLINE} talos.experimental.wipe=system:EPHEMERAL,STATE".encode(),
    ]
    assert pe.read_section(uki, ".linux") == kernel.read_bytes()
    assert pe.read_section(uki, ".initrd") == initramfs.read_bytes()
    assert pe.read_section(uki, ".osrel") == (
        b'NAME="Talos"\nID=talos\nVERSION_ID=v1.11.0\nPRETTY_NAME="Talos (v1.11.0)"\n'
        b'HOME_URL="https://www.talos.dev/"\nBUG_REPORT_URL="https://github.com/siderolabs/talos/issues"\n'
        b'VENDOR_NAME="Sidero Labs"\nVENDOR_URL="https://www.siderolabs.com/"\n'
    )
    uname = pe.read_section(uki, ".uname")
    assert uname is not None
    assert re.fullmatch(rb"\d+\.\d+\.\d+-\d+-amd64", uname)
    assert pe.parse(data).timestamp == assets.EPOCH


def test_kernel_version_matches_file_command(inputs: tuple[Path, Path]) -> None:
    out = subprocess.run(
        ["file", "-b", str(inputs[0])], capture_output=True, text=True, check=False
    )
    if "version" not in out.stdout:
        pytest.skip("file(1) does not report the kernel version")
    assert f"version {kernel_version(inputs[0])} " in out.stdout


def test_kernel_version_absent_for_non_bzimage(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(bytes(2048))
    assert kernel_version(path) is None


def test_os_release_lowercases_id() -> None:
    assert os_release(TalosVersion.parse("1.10.0"), "My OS").startswith(b'NAME="My OS"\nID=my_os\n')


def test_reproducible(work: Path, inputs: tuple[Path, Path], tmp_path: Path) -> None:
    key, cert = assets.self_signed(work, "repro")
    pcr_key = assets.rsa_key(work, "repro-pcr")
    outputs = []
    for run in ("a", "b"):
        run_dir = tmp_path / run
        run_dir.mkdir()
        outputs.append(
            _build(
                run_dir,
                inputs,
                "1.11.0",
                "sb.efi",
                kind=OutputKind.ISO,
                signer=SecureBootSigner(key, cert),
                pcr_key=pcr_key,
            )
        )
    assert outputs[0].read_bytes() == outputs[1].read_bytes()


def test_signed_uki_verifies(work: Path, inputs: tuple[Path, Path]) -> None:
    key, cert = assets.self_signed(work, "signer")
    _other_key, other_cert = assets.self_signed(work, "other")
    pcr_key = assets.rsa_key(work, "pcr")
    signed = _build(work, inputs, "1.11.0", "signed.efi", kind=OutputKind.ISO,
                    signer=SecureBootSigner(key, cert), pcr_key=pcr_key)  # fmt: skip
    unsigned = _build(work, inputs, "1.11.0", "unsigned.efi", kind=OutputKind.ISO)
    ok = subprocess.run(
        ["sbverify", "--cert", str(cert), str(signed)], capture_output=True, check=False
    )
    assert ok.returncode == 0, ok.stderr
    assert subprocess.run(["sbverify", "--cert", str(cert), str(unsigned)], capture_output=True,
                          check=False).returncode != 0  # fmt: skip
    assert subprocess.run(["sbverify", "--cert", str(other_cert), str(signed)], capture_output=True,
                          check=False).returncode != 0  # fmt: skip
    assert _objdump_sections(signed)[len(STUB_SECTIONS) :] == [
        ".osrel", ".cmdline", ".uname", ".pcrpkey", ".linux", ".initrd",
        ".profile", ".pcrsig", ".profile", ".cmdline", ".pcrsig",
    ]  # fmt: skip


def _sections(path: Path) -> list[tuple[str, bytes]]:
    data = path.read_bytes()
    return [
        (h.name, data[h.raw_pointer : h.raw_pointer + h.virtual_size])
        for h in pe.parse(data).sections
    ]


def test_pcrsig_matches_sections_and_key(work: Path, inputs: tuple[Path, Path]) -> None:
    key, cert = assets.self_signed(work, "signer")
    pcr_key_path = assets.rsa_key(work, "pcr")
    uki = _build(work, inputs, "1.11.0", "pcr.efi", kind=OutputKind.ISO,
                 signer=SecureBootSigner(key, cert), pcr_key=pcr_key_path)  # fmt: skip
    sections = _sections(uki)
    names = [n for n, _ in sections]
    base = {n: d for n, d in sections[: names.index(".profile")] if n in pcr.MEASURED_SECTIONS}
    base[".sbat"] = dict(sections)[".sbat"]
    sigs = [json.loads(d) for n, d in sections if n == ".pcrsig"]
    main = {**base, ".profile": b"ID=main"}
    reset = {
        **base,
        ".profile": b"ID=reset\nTITLE=Reset system disk",
        ".cmdline": f"{CMDLINE} talos.experimental.wipe=system".encode(),
    }
    public = serialization.load_pem_public_key(dict(sections)[".pcrpkey"])
    assert isinstance(public, rsa.RSAPublicKey)
    for sig, measured in zip(sigs, (main, reset), strict=True):
        assert sorted(sig) == ["sha256", "sha384", "sha512"]
        entry = sig["sha256"][0]
        value = pcr.pcr_values(measured, "sha256")["enter-machined"]
        policy = pcr.policy_pcr_digest(value, 0x000B)
        assert entry["pol"] == policy.hex()
        assert entry["pcrs"] == [11]
        public.verify(base64.b64decode(entry["sig"]), policy, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.skipif(
    not Path("/usr/lib/systemd/systemd-measure").exists(), reason="no systemd-measure"
)
@pytest.mark.parametrize("bank", ["sha256", "sha384", "sha512"])
def test_pcr_values_match_systemd_measure(tmp_path: Path, bank: str) -> None:
    # systemd 252 knows fewer sections than upstream's list; compare on those it knows.
    sections = {
        ".linux": b"kernel",
        ".osrel": b"NAME=x\n",
        ".cmdline": b"a=b",
        ".initrd": b"\0" * 70,
    }
    args = []
    for name, data in sections.items():
        (tmp_path / name).write_bytes(data)
        args.append(f"--{name[1:]}={tmp_path / name}")
    out = subprocess.run(
        ["/usr/lib/systemd/systemd-measure", "calculate", *args, f"--bank={bank}",
         "--phase=enter-initrd:leave-initrd:enter-machined", "--json=short"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    expected = json.loads(out.stdout)[bank][0]["hash"]
    assert pcr.pcr_values(sections, bank)["enter-machined"].hex() == expected


def test_policy_digest_is_sha256_of_policy_pcr() -> None:
    value = bytes(32)
    selection = bytes.fromhex("00000001000b03000800")
    expected = hashlib.sha256(
        bytes(32) + bytes.fromhex("0000017f") + selection + hashlib.sha256(value).digest()
    ).digest()
    assert pcr.policy_pcr_digest(value, 0x000B) == expected


def test_missing_inputs_are_invalid(work: Path, inputs: tuple[Path, Path]) -> None:
    kernel, initramfs = inputs
    common = {"cmdline": "x", "version": TalosVersion.parse("1.10.0"), "arch": Arch.AMD64,
              "out": work / "bad.efi", "epoch": 0}  # fmt: skip
    with pytest.raises(InvalidInput, match="kernel"):
        build_uki(stub=assets.STUB, kernel=work / "nope", initramfs=initramfs, **common)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="stub"):
        build_uki(stub=work / "nope", kernel=kernel, initramfs=initramfs, **common)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="PE32"):
        build_uki(stub=initramfs, kernel=kernel, initramfs=initramfs, **common)  # type: ignore[arg-type]
    key, cert = assets.self_signed(work, "signer")
    with pytest.raises(InvalidInput, match="PCR key"):
        build_uki(stub=assets.STUB, kernel=kernel, initramfs=initramfs,
                  signer=SecureBootSigner(key, cert), **common)  # type: ignore[arg-type]  # fmt: skip
    with pytest.raises(InvalidInput, match="PEM private key"):
        build_uki(stub=assets.STUB, kernel=kernel, initramfs=initramfs,
                  signer=SecureBootSigner(key, cert), pcr_key=cert, **common)  # type: ignore[arg-type]  # fmt: skip


def test_stub_without_sbat_builds_and_measures_no_sbat(
    work: Path, inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    # objcopy-converted stubs (Debian's arm64 one) keep SBAT inside .data.
    stub = tmp_path / "stub.efi"
    shutil.copyfile(assets.STUB, stub)
    data = bytearray(stub.read_bytes())
    index = data.find(b".sbat\0\0\0")
    data[index : index + 8] = b".xbat\0\0\0"
    stub.write_bytes(bytes(data))
    key, cert = assets.self_signed(work, "signer")
    out = tmp_path / "o.efi"
    build_uki(stub=stub, kernel=inputs[0], initramfs=inputs[1], cmdline="", arch=Arch.AMD64,
              version=TalosVersion.parse("1.11.0"), out=out, epoch=0,
              signer=SecureBootSigner(key, cert), pcr_key=assets.rsa_key(work, "pcr"))  # fmt: skip
    names = _objdump_sections(out)
    assert ".sbat" not in names and ".xbat" in names
    assert _verify_pcrsigs(out) == 3


@given(st.binary(max_size=600))
def test_pe_parse_rejects_garbage_cleanly(data: bytes) -> None:
    try:
        parsed = pe.parse(data, "garbage.efi")
    except InvalidInput as exc:
        assert str(exc).startswith("garbage.efi")  # names the file, never an IndexError
        return
    # Accepted only with both signatures where the headers say they are.
    assert data[:2] == b"MZ" and parsed.dos_header == data[: len(parsed.dos_header)]
    (lfanew,) = struct.unpack_from("<I", data, 0x3C)
    assert data[lfanew : lfanew + 4] == b"PE\0\0"


@given(st.integers(min_value=0, max_value=1 << 20))
def test_pe_parse_handles_mutated_stub(position: int) -> None:
    data = bytearray(assets.STUB.read_bytes()) if assets.STUB.is_file() else bytearray(b"MZ")
    if position < len(data):
        data[position] ^= 0xFF
    try:
        parsed = pe.parse(bytes(data))
    except InvalidInput:
        return
    assert parsed.sections


def _independent_pcr11(sections: dict[str, bytes], bank: str) -> bytes:
    """PCR 11 at enter-machined, straight from the systemd-stub/systemd-pcrphase definition."""

    def extend(pcr_value: bytes, data: bytes) -> bytes:
        return hashlib.new(bank, pcr_value + hashlib.new(bank, data).digest()).digest()

    value = bytes(hashlib.new(bank).digest_size)
    for name in pcr.MEASURED_SECTIONS:
        if name in sections:
            value = extend(extend(value, name.encode() + b"\0"), sections[name])
    for phase in ("enter-initrd", "leave-initrd", "enter-machined"):
        value = extend(value, phase.encode())
    return value


@pytest.mark.parametrize("version", ["1.9.0", "1.11.0"])
def test_pcrsig_every_bank_matches_independent_computation(
    work: Path, inputs: tuple[Path, Path], version: str
) -> None:
    """All three banks of every `.pcrsig`, recomputed from the UKI's own section bytes."""
    key, cert = assets.self_signed(work, "signer")
    pcr_key_path = assets.rsa_key(work, "pcr")
    uki = _build(work, inputs, version, f"banks-{version}.efi", kind=OutputKind.ISO,
                 signer=SecureBootSigner(key, cert), pcr_key=pcr_key_path)  # fmt: skip
    assert _verify_pcrsigs(uki) == (3 if version == "1.9.0" else 6)


def _verify_pcrsigs(uki: Path) -> int:
    """Check every bank of every `.pcrsig` against the sections before it; count the entries."""
    sections = _sections(uki)
    public = serialization.load_pem_public_key(dict(sections)[".pcrpkey"])
    assert isinstance(public, rsa.RSAPublicKey)
    fingerprint = hashlib.sha256(
        public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    ).hexdigest()
    algorithms = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}
    tpm_ids = {"sha256": "000b", "sha384": "000c", "sha512": "000d"}
    measured: dict[str, bytes] = {}
    checked = 0
    for name, data in sections:
        if name == ".pcrsig":
            document = json.loads(data)
            assert list(document) == ["sha256", "sha384", "sha512"]
            for bank, entries in document.items():
                value = _independent_pcr11(measured, bank)
                selection = bytes.fromhex("00000001" + tpm_ids[bank] + "03000800")
                policy = hashlib.sha256(
                    bytes(32)
                    + bytes.fromhex("0000017f")
                    + selection
                    + hashlib.sha256(value).digest()
                ).digest()
                [entry] = entries
                assert entry == {
                    "pcrs": [11], "pkfp": fingerprint, "pol": policy.hex(), "sig": entry["sig"]
                }  # fmt: skip
                public.verify(
                    base64.b64decode(entry["sig"]), policy, padding.PKCS1v15(), algorithms[bank]
                )
                checked += 1
        elif name in pcr.MEASURED_SECTIONS:
            measured[name] = data
    return checked


def test_digest_files_streams_the_same_digests(tmp_path: Path) -> None:
    files = []
    for index, size in enumerate((0, 1, 65536, (1 << 20) + 3)):
        path = tmp_path / f"f{index}"
        path.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
        files.append(path)
    digests = pcr.digest_files([*files, files[0]])
    assert set(digests) == set(files)
    for path in files:
        assert digests[path] == pcr.digest_bytes(path.read_bytes())
        assert digests[path]["sha384"] == hashlib.sha384(path.read_bytes()).digest()
    assert pcr.digest_files([]) == {}


@given(st.dictionaries(st.sampled_from(pcr.MEASURED_SECTIONS), st.binary(max_size=300), min_size=1))
def test_pcr_values_from_digests_equals_measuring_bytes(sections: dict[str, bytes]) -> None:
    digests = {name: pcr.digest_bytes(data) for name, data in sections.items()}
    for bank in pcr.BANK_NAMES:
        values = pcr.pcr_values_from_digests(digests, bank)
        assert values == pcr.pcr_values(sections, bank)
        assert values["enter-machined"] == _independent_pcr11(sections, bank)


def test_unknown_measured_section_is_invalid() -> None:
    with pytest.raises(InvalidInput, match=r"\.text"):
        pcr.pcr_values({".text": b"x"}, "sha256")
    with pytest.raises(InvalidInput, match=r"\.text"):
        pcr.pcr_values_from_digests({".text": pcr.digest_bytes(b"x")}, "sha256")


def test_inconsistent_pcr_key_is_invalid(tmp_path: Path) -> None:
    # Wrong private exponents: OpenSSL's load-time check is skipped, the test signature catches it.
    numbers = rsa.generate_private_key(65537, 2048).private_numbers()
    broken = rsa.RSAPrivateNumbers(
        numbers.p, numbers.q, numbers.d + 2, numbers.dmp1 + 2, numbers.dmq1 + 2, numbers.iqmp,
        numbers.public_numbers,
    ).private_key(unsafe_skip_rsa_key_validation=True)  # fmt: skip
    path = tmp_path / "broken.pem"
    path.write_bytes(
        broken.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(InvalidInput, match="inconsistent RSA key"):
        pcr.load_rsa_key(path)


def test_uki_is_stamped_with_the_epoch(work: Path, inputs: tuple[Path, Path]) -> None:
    uki = _build(work, inputs, "1.11.0", "stamped.efi", kind=OutputKind.ISO)
    assert uki.stat().st_mtime_ns == assets.EPOCH * 1_000_000_000


def test_large_sections_copied_exactly(
    work: Path, inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    # Bigger than one copy_file_range round and not a multiple of the file alignment.
    initramfs = tmp_path / "big-initramfs"
    initramfs.write_bytes(bytes(range(251)) * ((3 << 20) // 251) + b"end")
    out = _build(tmp_path, (inputs[0], initramfs), "1.11.0", "big.efi", kind=OutputKind.ISO)
    assert pe.read_section(out, ".initrd") == initramfs.read_bytes()
    assert pe.read_section(out, ".linux") == inputs[0].read_bytes()


def test_recorded_initramfs_digests_give_the_same_uki(
    work: Path, inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    """Same bytes with and without the sidecar; a planted wrong sidecar shows it is used."""
    initramfs = tmp_path / "initramfs.xz"
    shutil.copyfile(inputs[1], initramfs)
    key, cert = assets.self_signed(work, "signer")
    signed = {"kind": OutputKind.ISO, "signer": SecureBootSigner(key, cert),
              "pcr_key": assets.rsa_key(work, "pcr")}  # fmt: skip
    plain = _build(tmp_path, (inputs[0], initramfs), "1.11.0", "plain.efi", **signed)
    assert not pcr.sidecar_path(initramfs).exists()
    pcr.record_digests(initramfs)
    cached = _build(tmp_path, (inputs[0], initramfs), "1.11.0", "cached.efi", **signed)
    assert cached.read_bytes() == plain.read_bytes()
    sidecar = json.loads(pcr.sidecar_path(initramfs).read_bytes())
    sidecar["sha256"] = "00" * 32
    pcr.sidecar_path(initramfs).write_text(json.dumps(sidecar))
    planted = _build(tmp_path, (inputs[0], initramfs), "1.11.0", "planted.efi", **signed)
    assert pe.read_section(planted, ".pcrsig") != pe.read_section(plain, ".pcrsig")
