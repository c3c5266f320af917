/*
 * PortIo firmware: a 64 KiB image for QEMU's -bios.
 *
 * QEMU maps the image so that its last 16 bytes hold the reset vector
 * (CS:IP = F000:FFF0, file offset 0xFFF0); the rest of the image is
 * visible at F000:0000. The loop does nothing but write to port 0x80,
 * which KVM cannot complete in the kernel: every iteration is one
 * KVM_EXIT_IO to QEMU, so the exit rate is limited only by how fast
 * the vCPU executes two instructions.
 *
 * Linked at address 0 so that label values equal file offsets and
 * offsets inside segment F000.
 */
	.code16
	.text
	.globl	_start
_start:
io_loop:
	movb	$0x55, %al
1:	outb	%al, $0x80
	jmp	1b

	/* Reset vector: jump into segment F000 with a CS base that matches it. */
	.org	0xfff0
reset_vector:
	cli
	ljmp	$0xf000, $io_loop

	/* Pad to exactly 64 KiB; QEMU wants a -bios image sized in 64 KiB units. */
	.org	0x10000, 0xff
