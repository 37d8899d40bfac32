/* The smallest useful QEMU `-M microvm` guest: a PVH kernel that powers the
 * machine off as its first action, so a QEMU run measures VM creation,
 * firmware (qboot + pvh.bin), kernel loading and teardown, nothing else.
 *
 * QEMU finds the entry in the XEN_ELFNOTE_PHYS32_ENTRY note and jumps there
 * in 32-bit protected mode, paging off. The write of SLP_TYP=S5|SLP_EN to
 * microvm's ACPI GED sleep-control register (0xfea00200) is an ACPI
 * poweroff: QEMU exits with status 0 (-no-reboot is not needed for it, but
 * keeps a fault from looping). isa-debug-exit would work too, but its status
 * is always odd, which hyperfine counts as a failure. */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4          /* namesz: "Xen\0" */
	.long 4          /* descsz */
	.long 18         /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.long _start

	.text
	.code32
	.globl _start
_start:
#ifndef HALT_ONLY  /* bench/snapshot builds a variant that idles instead */
	movb $0x34, 0xfea00200  /* (SLP_TYP 5 << 2) | SLP_EN (1 << 5) */
#endif
1:	hlt
	jmp 1b
