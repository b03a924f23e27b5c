#!/bin/bash
# dracut module: slotctl chooses and verifies the root slot (root=slotctl on the kernel
# command line). Installed as /usr/lib/dracut/modules.d/90slotctl/; works in dracut's
# systemd mode (the default where systemd is installed) and in its shell mode.
#
# The paths can be overridden from the environment, as for the initramfs-tools hook
# (the QEMU test does): SLOTCTL_BIN, SLOTCTL_CONF, SLOTCTL_BOOT_CONF, SLOTCTL_LIB,
# SLOTCTL_KEYS_SRC.

slotctl_paths() {
	SLOTCTL_BIN=${SLOTCTL_BIN:-/usr/sbin/slotctl}
	SLOTCTL_CONF=${SLOTCTL_CONF:-/etc/slotctl.conf}
	SLOTCTL_BOOT_CONF=${SLOTCTL_BOOT_CONF:-/etc/slotctl/boot.conf}
	SLOTCTL_LIB=${SLOTCTL_LIB:-/usr/lib/slotctl/boot.sh}
}

check() {
	slotctl_paths
	[ -x "$SLOTCTL_BIN" ] && [ -r "$SLOTCTL_CONF" ] && [ -r "$SLOTCTL_LIB" ] || return 1
	# Only when asked for (add_dracutmodules+=" slotctl "): a host that does not boot
	# from slots must not get this hook.
	return 255
}

depends() {
	echo dm
	return 0
}

installkernel() {
	instmods dm_verity
}

install() {
	local keys key found=0
	slotctl_paths
	inst_binary "$SLOTCTL_BIN" /usr/sbin/slotctl
	inst_simple "$SLOTCTL_CONF" /etc/slotctl.conf
	inst_simple "$SLOTCTL_LIB" /usr/lib/slotctl/boot.sh
	[ -r "$SLOTCTL_BOOT_CONF" ] && inst_simple "$SLOTCTL_BOOT_CONF" /etc/slotctl/boot.conf
	# Where the keys live on the device (the config's `keys =`, read by boot.sh's reader,
	# in a subshell so nothing else of boot.sh runs here), and where to take them from.
	keys=$(SLOTCTL_BOOT_CONF=/dev/null; . "$SLOTCTL_LIB"; slotctl_conf_value keys)
	keys=${keys:-/etc/slotctl/keys}
	for key in "${SLOTCTL_KEYS_SRC:-$keys}"/*.pem; do
		[ -f "$key" ] || continue
		inst_simple "$key" "$keys/${key##*/}"
		found=1
	done
	if [ "$found" = 0 ]; then
		derror "slotctl: no *.pem key in ${SLOTCTL_KEYS_SRC:-$keys}; every slot would be refused"
		return 1
	fi
	inst_multiple veritysetup blockdev dmsetup mount sed sleep modprobe reboot poweroff tail cat sync readlink
	inst_multiple -o halt
	inst_hook cmdline 90 "$moddir/parse-slotctl.sh"
	inst_script "$moddir/slotctl-root.sh" /sbin/slotctl-root
	chmod 0755 "$initdir/sbin/slotctl-root"
	# The slot is chosen from the initqueue, which systemd mode starts only when asked.
	dracut_need_initqueue
	# systemd mode: the generator's sysroot.mount names the mapping the job creates.
	if dracut_module_included systemd; then
		inst_multiple systemd-escape
		inst_script "$moddir/slotctl-generator.sh" "$systemdutildir"/system-generators/slotctl-generator
		chmod 0755 "$initdir$systemdutildir/system-generators/slotctl-generator"
	fi
}
