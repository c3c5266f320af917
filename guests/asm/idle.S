/*
 * Idle boot sector: SeaBIOS loads it at 0000:7C00 and jumps to it.
 *
 * The vCPU halts with interrupts enabled, so it blocks in the kernel
 * (no userspace exit) until the BIOS timer tick (IRQ 0, ~18.2 Hz)
 * wakes it; each wakeup is one kvm_vcpu_wakeup.
 *
 * Progress marker for the harness, in free conventional memory: the
 * magic "KVMT" at physical 0x500 says this sector is running (not the
 * BIOS), and the 32-bit count at 0x504 grows by one per wakeup.
 */
	.code16
	.text
	.globl	_start

	.set	MAGIC_ADDR, 0x500
	.set	MAGIC, 0x544d564b		/* "KVMT" */
	.set	LOOP_COUNT, 0x504

_start:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %ss
	movw	$0x7c00, %sp
	movl	$0, LOOP_COUNT
	movl	$MAGIC, MAGIC_ADDR
	sti
1:	hlt
	addl	$1, LOOP_COUNT
	jmp	1b

	.org	510
	.word	0xaa55
