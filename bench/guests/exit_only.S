/* The smallest Linux program: exit_group(0) is its first instruction. Under
 * `vessel run` it measures the floor of a thin-VM start on the machine (the
 * VMM process, KVM's VM and vCPU set-up, the first KVM_RUN, one exit),
 * against which the cost of a real program's start-up can be told apart. */
	.globl _start
	.text
_start:
	mov	$231, %eax	/* exit_group */
	xor	%edi, %edi
	syscall
	.section .note.GNU-stack, "", @progbits
