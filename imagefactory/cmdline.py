"""The kernel command line of an asset, in upstream's order and with upstream's merge rules.

`KernelArgs` follows go-procfs Cmdline: values grouped per key at the key's first position.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from imagefactory import meta
from imagefactory.platforms import get_platform
from imagefactory.profile import OutputKind, Profile
from imagefactory.quirks import Quirks

# User args that replace rather than add to earlier values (imager buildCmdline).
OVERWRITE_KEYS = ("console", "talos.platform")


def default_args(quirks: Quirks) -> tuple[str, ...]:
    """Upstream kernel.DefaultArgs for a version."""
    args: list[str] = []
    if quirks.init_on_alloc:
        args.append("init_on_alloc=1")
    args += ["slab_nomerge", "pti=on", "consoleblank=0"]
    if not quirks.nvme_timeout_aws_only:
        args.append("nvme_core.io_timeout=4294967295")
    args.append("printk.devkmsg=on")
    if quirks.ima:
        args += ["ima_template=ima-ng", "ima_appraise=fix", "ima_hash=sha512"]
    if quirks.selinux:
        args.append("selinux=1")
    if quirks.module_sig_enforce:
        args.append("module.sig_enforce=1")
    if quirks.proc_mem_override_never:
        args.append("proc_mem.force_override=never")
    return tuple(args)


def secureboot_args(quirks: Quirks) -> tuple[str, ...]:
    return ("lockdown=confidentiality",) if quirks.lockdown_confidentiality else ()


@dataclass
class _Param:
    key: str
    values: list[str] = field(default_factory=list)


def _parse(args: Iterable[str]) -> list[_Param]:
    """Split on whitespace and group values per key, keeping the first position of each key."""
    params: list[_Param] = []
    for word in " ".join(args).split():
        key, _, value = word.partition("=")
        _add(params, key, value)
    return params


def _add(params: list[_Param], key: str, value: str) -> None:
    for param in params:
        if param.key == key:
            param.values.append(value)
            return
    params.append(_Param(key, [value]))


class KernelArgs:
    """A mutable command line; only this module builds one, callers get strings."""

    def __init__(self, args: Iterable[str] = ()) -> None:
        self._params = _parse(args)

    def __str__(self) -> str:
        return " ".join(
            param.key if value == "" else f"{param.key}={value}"
            for param in self._params
            for value in param.values
        )

    def append(self, key: str, value: str) -> None:
        _add(self._params, key, value)

    def set_all(self, args: Iterable[str]) -> None:
        """Each key's values replace the existing ones in place, or go at the end."""
        for param in _parse(args):
            self._set(param)

    def append_all(
        self,
        args: Iterable[str],
        *,
        overwrite: Sequence[str] = (),
        delete_negated: bool = False,
    ) -> None:
        for param in _parse(args):
            if delete_negated and len(param.key) > 1 and param.key.startswith("-"):
                self._delete(param.key[1:], param.values)
            elif param.key in overwrite:
                self._set(param)
            else:
                for value in param.values:
                    self.append(param.key, value)

    def _set(self, new: _Param) -> None:
        for index, param in enumerate(self._params):
            if param.key == new.key:
                self._params[index] = _Param(new.key, list(new.values))
                return
        self._params.append(_Param(new.key, list(new.values)))

    def _delete(self, key: str, values: list[str]) -> None:
        # `-key` (first value empty) drops the key entirely; `-key=v` drops only matching values.
        if values[0] == "":
            self._params = [param for param in self._params if param.key != key]
            return
        for param in self._params:
            if param.key == key:
                param.values = [value for value in param.values if value not in values]
                return


def build(profile: Profile, *, overlay_kernel_args: Sequence[str] = ()) -> str:
    """Upstream imager buildCmdline for a resolved profile."""
    quirks = profile.quirks
    platform = get_platform(profile.platform)
    cmdline = KernelArgs()
    cmdline.append("talos.platform", platform.name)
    cmdline.set_all(platform.kernel_args_for(profile.arch, quirks))
    if quirks.halt_if_installed and profile.kind is OutputKind.ISO:
        cmdline.append("talos.halt_if_installed", "1")
    cmdline.set_all(overlay_kernel_args)
    cmdline.append_all(default_args(quirks))
    if profile.secureboot:
        cmdline.append_all(secureboot_args(quirks))
    if profile.meta_on_cmdline:
        env = meta.encode_env(profile.meta, allow_gzip=quirks.compressed_meta)
        cmdline.append("talos.environment", f"{meta.ENV_VAR}={env}")
    cmdline.append_all(profile.extra_kernel_args, overwrite=OVERWRITE_KEYS, delete_negated=True)
    return str(cmdline)
