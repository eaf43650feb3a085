"""Kernel command lines: upstream's exact strings per version, platform, arch, kind and Secure Boot."""

from __future__ import annotations

import base64
import gzip

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory import cmdline
from imagefactory.cmdline import KernelArgs
from imagefactory.profile import OutputKind, request_for, resolve, resolve_request
from imagefactory.schematic import Customization, MetaValue, Overlay, Schematic
from imagefactory.versions import TalosVersion

V = TalosVersion.parse

IMA = "ima_template=ima-ng ima_appraise=fix ima_hash=sha512"
OLD_DEFAULTS = (
    "init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 "
    f"printk.devkmsg=on {IMA}"
)


def line(path: str, version: str, schematic: Schematic | None = None) -> str:
    return cmdline.build(resolve(path, V(version), schematic))


def args_schematic(*args: str, meta: tuple[MetaValue, ...] = ()) -> Schematic:
    return Schematic(customization=Customization(extra_kernel_args=args, meta=meta))


# Upstream pkg/imager/imager_test.go and image-factory integration tests, plus the derived
# lines of the reference for the boundaries they don't cover.
EXACT = [
    (
        "cmdline-metal-amd64",
        "1.7.0",
        f"talos.platform=metal console=ttyS0 console=tty0 {OLD_DEFAULTS}",
    ),
    (
        "cmdline-metal-arm64",
        "1.7.0",
        f"talos.platform=metal console=ttyAMA0 console=tty0 {OLD_DEFAULTS}",
    ),
    ("cmdline-metal-amd64", "1.8.0", f"talos.platform=metal console=tty0 {OLD_DEFAULTS}"),
    (
        "cmdline-metal-arm64",
        "1.8.0",
        f"talos.platform=metal console=ttyAMA0 console=tty0 {OLD_DEFAULTS}",
    ),
    ("cmdline-metal-amd64", "1.9.0", f"talos.platform=metal console=tty0 {OLD_DEFAULTS}"),
    (
        "cmdline-metal-amd64",
        "1.10.1",
        f"talos.platform=metal console=tty0 {OLD_DEFAULTS} selinux=1",
    ),
    (
        "cmdline-metal-arm64",
        "1.10.1",
        f"talos.platform=metal console=ttyAMA0 console=tty0 {OLD_DEFAULTS} selinux=1",
    ),
    (
        "cmdline-metal-amd64",
        "1.11.0",
        "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1",
    ),
    (
        "cmdline-metal-arm64",
        "1.11.0",
        "talos.platform=metal console=ttyAMA0 console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1",
    ),
    (
        "cmdline-metal-amd64",
        "1.12.0",
        "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1",
    ),
    (
        "cmdline-metal-amd64",
        "1.13.0",
        "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never",
    ),
    (
        "cmdline-metal-arm64",
        "1.13.0",
        "talos.platform=metal console=ttyAMA0 console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never",
    ),
    (
        "cmdline-metal-amd64",
        "1.14.0",
        "talos.platform=metal console=tty0 slab_nomerge pti=on consoleblank=0 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never",
    ),
    (
        "cmdline-metal-arm64",
        "1.14.0",
        "talos.platform=metal console=ttyAMA0 console=tty0 slab_nomerge pti=on consoleblank=0 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never",
    ),
    (
        "cmdline-aws-amd64",
        "1.9.0",
        f"talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 {OLD_DEFAULTS}",
    ),
    (
        "cmdline-aws-amd64",
        "1.11.0",
        "talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1",
    ),
    (
        "cmdline-aws-amd64",
        "1.13.0",
        "talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never",
    ),
    (
        "cmdline-aws-arm64",
        "1.13.0",
        "talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never",
    ),
    (
        "cmdline-aws-amd64",
        "1.14.0",
        "talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 nvme_core.io_timeout=4294967295 slab_nomerge pti=on consoleblank=0 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never",
    ),
    (
        "cmdline-aws-arm64",
        "1.14.0",
        "talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 nvme_core.io_timeout=4294967295 slab_nomerge pti=on consoleblank=0 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never",
    ),
    (
        "cmdline-azure-amd64",
        "1.11.0",
        "talos.platform=azure console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 net.ifnames=0 talos.dashboard.disabled=1 sysctl.kernel.kexec_load_disabled=1 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1",
    ),
    (
        "cmdline-equinixMetal-amd64",
        "1.10.0",
        f"talos.platform=equinixMetal console=ttyS1,115200n8 {OLD_DEFAULTS} selinux=1",
    ),
    (
        "cmdline-equinixMetal-arm64",
        "1.14.0",
        "talos.platform=equinixMetal console=ttyAMA0,115200 slab_nomerge pti=on consoleblank=0 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never",
    ),
    (
        "cmdline-vmware-amd64",
        "1.12.0",
        "talos.platform=vmware talos.config=guestinfo console=tty0 console=ttyS0 earlyprintk=ttyS0,115200 net.ifnames=0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1",
    ),
    (
        "cmdline-vmware-arm64",
        "1.14.0",
        "talos.platform=vmware talos.config=guestinfo console=tty0 console=ttyAMA0 net.ifnames=0 slab_nomerge pti=on consoleblank=0 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never",
    ),
    ("cmdline-upcloud-amd64", "1.4.0", f"talos.platform=upcloud net.ifnames=0 {OLD_DEFAULTS}"),
]


@pytest.mark.parametrize(("path", "version", "expected"), EXACT)
def test_exact(path: str, version: str, expected: str) -> None:
    assert line(path, version) == expected
    # Quirks ignore pre-releases: an rc of the release has the release's line.
    assert line(path, f"{version}-rc.1") == expected


def test_version_boundaries_change_the_line() -> None:
    lines = {v: line("cmdline-metal-amd64", v) for v in ("1.9.9", "1.10.0", "1.10.99", "1.11.0")}
    assert "selinux=1" not in lines["1.9.9"]
    assert lines["1.10.0"].endswith(f"{IMA} selinux=1")
    assert IMA in lines["1.10.99"]
    assert IMA not in lines["1.11.0"]
    assert "module.sig_enforce=1" not in line("cmdline-metal-amd64", "1.11.9")
    assert "proc_mem" not in line("cmdline-metal-amd64", "1.12.9")
    assert "init_on_alloc=1" in line("cmdline-metal-amd64", "1.13.9")


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.7.0", f"talos.platform=metal console=ttyS0 console=tty0 {OLD_DEFAULTS}"),
        ("1.8.0", f"talos.platform=metal console=tty0 talos.halt_if_installed=1 {OLD_DEFAULTS}"),
        (
            "1.14.0",
            "talos.platform=metal console=tty0 talos.halt_if_installed=1 slab_nomerge pti=on consoleblank=0 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never",
        ),
    ],
)
def test_iso_halt_flag_follows_platform_args(version: str, expected: str) -> None:
    assert line("metal-amd64.iso", version) == expected
    assert "halt_if_installed" not in line("metal-amd64.raw.xz", version)
    assert "halt_if_installed" not in line("metal-amd64-uki.efi", "1.8.0")


def test_secureboot_lockdown_before_1_14() -> None:
    # image-factory pxe_test securebootExpected (Talos 1.x before 1.8 keeps ttyS0).
    assert line("metal-amd64-secureboot-uki.efi", "1.7.0") == (
        f"talos.platform=metal console=ttyS0 console=tty0 {OLD_DEFAULTS} lockdown=confidentiality"
    )
    assert line("cmdline-metal-amd64-secureboot", "1.13.0").endswith(
        "proc_mem.force_override=never lockdown=confidentiality"
    )
    assert "lockdown" not in line("cmdline-metal-amd64-secureboot", "1.14.0")
    assert line("cmdline-metal-amd64-secureboot", "1.14.0") == line("cmdline-metal-amd64", "1.14.0")
    assert "lockdown" not in line("cmdline-metal-amd64", "1.13.0")


def test_extra_args_are_appended_last() -> None:
    # image-factory integration "extra metal": the schematic's args come after the defaults.
    schematic = args_schematic("nolapic", "nomodeset")
    assert line("cmdline-metal-amd64", "1.11.0", schematic) == (
        line("cmdline-metal-amd64", "1.11.0") + " nolapic nomodeset"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("console=ttyS1",), "talos.platform=metal console=ttyS1 slab_nomerge"),
        (
            ("console=ttyS1", "console=tty0"),
            "talos.platform=metal console=ttyS1 console=tty0 slab_nomerge",
        ),
        (
            ("talos.platform=akamai",),
            "talos.platform=akamai console=ttyAMA0 console=tty0 slab_nomerge",
        ),
        (("-console",), "talos.platform=metal slab_nomerge"),
        (("-console=tty0",), "talos.platform=metal console=ttyAMA0 slab_nomerge"),
        (
            ("-slab_nomerge", "slab_nomerge=1"),
            "talos.platform=metal console=ttyAMA0 console=tty0 slab_nomerge=1",
        ),
        (("-console=ttyAMA0", "-console"), "talos.platform=metal console=tty0 slab_nomerge"),
        (("-", "foo"), "talos.platform=metal console=ttyAMA0 console=tty0 slab_nomerge - foo"),
        (("-nothere",), "talos.platform=metal console=ttyAMA0 console=tty0 slab_nomerge"),
        (
            ("slab_nomerge=",),
            "talos.platform=metal console=ttyAMA0 console=tty0 slab_nomerge slab_nomerge",
        ),
        (("a=1 b=2",), "talos.platform=metal console=ttyAMA0 console=tty0 slab_nomerge a=1 b=2"),
    ],
)
def test_extra_arg_rules(args: tuple[str, ...], expected: str) -> None:
    # The merge rules on a small base, with the same order of operations as build().
    base = KernelArgs()
    base.append("talos.platform", "metal")
    base.set_all(["console=ttyAMA0", "console=tty0"])
    base.append_all(["slab_nomerge="])
    base.append_all(args, overwrite=cmdline.OVERWRITE_KEYS, delete_negated=True)
    assert str(base) == expected


def test_extra_args_in_a_full_line() -> None:
    schematic = args_schematic("console=ttyS0,115200", "-selinux", "-init_on_alloc", "quiet")
    assert line("cmdline-metal-amd64", "1.11.0", schematic) == (
        "talos.platform=metal console=ttyS0,115200 slab_nomerge pti=on consoleblank=0 "
        "nvme_core.io_timeout=4294967295 printk.devkmsg=on quiet"
    )


def test_meta_goes_on_the_cmdline_except_for_disk_images() -> None:
    value = MetaValue(0xA, '{"externalIPs":["1.2.3.4"]}')
    schematic = args_schematic("nolapic", meta=(value,))
    env = "talos.environment=INSTALLER_META_BASE64=MHhhPXsiZXh0ZXJuYWxJUHMiOlsiMS4yLjMuNCJdfQ=="
    assert line("cmdline-metal-amd64", "1.11.0", schematic) == (
        f"{line('cmdline-metal-amd64', '1.11.0')} {env} nolapic"
    )
    assert line("metal-amd64.iso", "1.11.0", schematic).endswith(f" {env} nolapic")
    assert line("metal-amd64-secureboot.iso", "1.11.0", schematic).endswith(
        f"lockdown=confidentiality {env} nolapic"
    )
    assert env not in line("metal-amd64.raw.zst", "1.11.0", schematic)
    assert line("metal-amd64.raw.zst", "1.11.0", schematic).endswith(" nolapic")
    # EnhanceFromSchematic: every kind but kernel, initramfs and the installer gets META.
    assert line("metal-amd64-uki.efi", "1.11.0", schematic).endswith(f" {env} nolapic")
    assert line("metal-amd64-uki.efi", "1.9.0", schematic).endswith(f" {env} nolapic")
    assert env not in line("installer-amd64.tar", "1.11.0", schematic)
    assert env not in line("installer-amd64-secureboot.tar", "1.11.0", schematic)


def test_meta_gzip_from_1_6_3() -> None:
    schematic = args_schematic(meta=(MetaValue(0xA, "x" * 300),))
    for version, gzipped in (("1.6.2", False), ("1.6.3", True), ("1.6.3-beta.0", True)):
        text = line("cmdline-metal-amd64", version, schematic)
        env = text.split("INSTALLER_META_BASE64=", 1)[1].split(" ", 1)[0]
        raw = base64.b64decode(env)
        assert raw.startswith(b"\x1f\x8b") is gzipped
        assert (gzip.decompress(raw) if gzipped else raw) == b"0xa=" + b"x" * 300


@pytest.mark.parametrize(
    ("path", "version", "has_args"),
    [
        ("kernel-amd64", "1.11.0", False),
        ("initramfs-amd64.xz", "1.11.0", False),
        ("installer-amd64.tar", "1.9.0", False),
        ("installer-amd64-secureboot.tar", "1.9.0", True),
        ("installer-amd64.tar", "1.10.0", False),
        ("aws-installer-amd64.tar", "1.10.0", False),
        ("aws-installer-amd64-secureboot.tar", "1.10.0", True),
        ("metal-amd64-uki.efi", "1.9.0", True),
        ("metal-amd64-uki.efi", "1.10.0-alpha.0", True),
        ("metal-amd64.iso", "1.5.0", True),
        ("metal-amd64.raw.xz", "1.5.0", True),
        ("cmdline-metal-amd64", "1.5.0", True),
    ],
)
def test_which_kinds_take_the_schematic_args(path: str, version: str, has_args: bool) -> None:
    text = line(path, version, args_schematic("nolapic"))
    assert text.endswith(" nolapic") is has_args


def test_overlay_args_come_after_platform_args_and_replace_keys() -> None:
    profile = resolve("metal-arm64.raw.xz", V("1.11.0"))
    text = cmdline.build(
        profile,
        overlay_kernel_args=(
            "console=tty1",
            "console=ttyAMA0,115200",
            "sysctl.kernel.kexec_load_disabled=1",
        ),
    )
    assert text.startswith(
        "talos.platform=metal console=tty1 console=ttyAMA0,115200 "
        "sysctl.kernel.kexec_load_disabled=1 init_on_alloc=1"
    )


def test_kind_defaults_for_the_cli_helper() -> None:
    version = V("1.14.0")
    request = request_for(OutputKind.CMDLINE, "aws", "amd64", version)
    assert request.kind is OutputKind.CMDLINE
    assert cmdline.build(resolve_request(request, version)) == (
        "talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 nvme_core.io_timeout=4294967295 slab_nomerge pti=on consoleblank=0 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never"
    )
    iso = request_for(OutputKind.ISO, "metal", "x86_64", version)
    assert "talos.halt_if_installed=1" in cmdline.build(resolve_request(iso, version))


def test_overlay_schematic_needs_1_7() -> None:
    from imagefactory.errors import InvalidInput

    schematic = Schematic(overlay=Overlay(image="siderolabs/sbc-raspberrypi", name="rpi_generic"))
    with pytest.raises(InvalidInput, match=r"overlay is not supported for Talos version v1\.6\.0"):
        resolve("metal-arm64.raw.xz", V("1.6.0"), schematic)
    assert resolve("metal-arm64.raw.xz", V("1.7.0"), schematic).kind is OutputKind.IMAGE


def test_cli_prints_the_aws_line(capsys: pytest.CaptureFixture[str]) -> None:
    from imagefactory.cli import main

    assert main(["cmdline", "--version", "v1.14.0", "--platform", "aws", "--arch", "amd64"]) == 0
    assert capsys.readouterr().out == (
        "talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 nvme_core.io_timeout=4294967295 slab_nomerge pti=on consoleblank=0 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never\n"
    )


def test_cli_kind_and_secureboot(capsys: pytest.CaptureFixture[str]) -> None:
    from imagefactory.cli import main

    argv = ["cmdline", "--version", "1.9.0", "--platform", "metal", "--arch", "amd64"]
    assert main([*argv, "--kind", "iso", "--secureboot"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "talos.halt_if_installed=1" in out
    assert out.endswith("lockdown=confidentiality\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--version", "1.9", "--platform", "aws", "--arch", "amd64"],
            "invalid Talos version '1.9'",
        ),
        (
            ["--version", "1.9.0", "--platform", "nope", "--arch", "amd64"],
            'unknown platform: "nope"',
        ),
        (
            ["--version", "1.9.0", "--platform", "aws", "--arch", "riscv64"],
            'invalid architecture: "riscv64"',
        ),
        (
            ["--version", "1.4.0", "--platform", "aws", "--arch", "amd64", "--secureboot"],
            "secureboot is not supported",
        ),
        (
            [
                "--version",
                "1.9.0",
                "--platform",
                "aws",
                "--arch",
                "amd64",
                "--schematic",
                "/nonexistent",
            ],
            "/nonexistent: no such file",
        ),
    ],
)
def test_cli_bad_input(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from imagefactory.cli import main

    assert main(["cmdline", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


_word = st.from_regex(r"-?[a-z][a-z._]{0,5}(=[a-z0-9,]{0,4})?", fullmatch=True)


@given(st.lists(_word, max_size=8))
def test_rendering_is_stable(args: list[str]) -> None:
    once = str(KernelArgs(args))
    assert str(KernelArgs(once.split())) == once


@given(st.lists(_word, max_size=6), st.from_regex(r"zz[a-z]{1,4}=[0-9]{1,3}", fullmatch=True))
def test_new_keys_go_last_and_negation_removes(args: list[str], new: str) -> None:
    cmd = KernelArgs(args)
    cmd.append_all([new], overwrite=cmdline.OVERWRITE_KEYS, delete_negated=True)
    assert str(cmd).endswith(new)
    key = new.split("=", maxsplit=1)[0]
    cmd.append_all([f"-{key}"], overwrite=cmdline.OVERWRITE_KEYS, delete_negated=True)
    assert all(word.partition("=")[0] != key for word in str(cmd).split())
