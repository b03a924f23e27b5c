#!/bin/bash
# dracut module: slotctl chooses and verifies the root slot (root=slotctl on the kernel
# command line). Installed as /usr/lib/dracut/modules.d/90slotctl/.

check() {
	require_binaries slotctl || return 1
	[ -r /etc/slotctl.conf ] || return 1
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
	local keys key
	inst_binary "$(command -v slotctl)" /usr/sbin/slotctl
	inst_simple /etc/slotctl.conf
	inst_simple /usr/lib/slotctl/boot.sh
	[ -r /etc/slotctl/boot.conf ] && inst_simple /etc/slotctl/boot.conf
	# Read as slotctl reads it: `#` starts a comment, the last line wins.
	keys=$(sed -n 's/#.*//; s/\r$//; s/^[[:space:]]*keys[[:space:]]*=[[:space:]]*//p' /etc/slotctl.conf | sed 's/[[:space:]]*$//' | tail -n 1)
	keys=${keys:-/etc/slotctl/keys}
	local found=0
	for key in "$keys"/*.pem; do
		[ -f "$key" ] && inst_simple "$key" && found=1
	done
	if [ "$found" = 0 ]; then
		derror "slotctl: no *.pem key in $keys; every slot would be refused"
		return 1
	fi
	inst_binary veritysetup
	inst_multiple sed sleep modprobe reboot poweroff tail cat sync readlink blockdev
	inst_hook cmdline 90 "$moddir/parse-slotctl.sh"
	inst_script "$moddir/slotctl-root.sh" /sbin/slotctl-root
}
