/*
 * DiskReader boot sector: SeaBIOS loads it at 0000:7C00 with the boot
 * drive number in DL.
 *
 * It reads the boot disk forever through the BIOS extended read
 * (INT 13h, AH=42h), 4 KiB per call, walking the LBA across the first
 * 8 MiB of the disk so that every read is a different block and the
 * host sees real block requests rather than one cached sector.
 *
 * Progress marker for the harness, in free conventional memory: the
 * magic "KVMT" at physical 0x500 says this sector is running (not the
 * BIOS), and the 32-bit count at 0x504 grows by one per INT 13h call.
 */
	.code16
	.text
	.globl	_start

	.set	SECTORS_PER_READ, 8		/* 4 KiB */
	.set	FIRST_LBA, 8			/* skip the boot sector's 4 KiB */
	.set	END_LBA, 16384			/* 8 MiB */
	.set	BUFFER_SEGMENT, 0x1000		/* physical 0x10000, clear of this code */
	.set	MAGIC_ADDR, 0x500
	.set	MAGIC, 0x544d564b		/* "KVMT" */
	.set	LOOP_COUNT, 0x504

_start:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	$0x7c00, %sp
	sti
	movb	%dl, boot_drive
	movl	$0, LOOP_COUNT
	movl	$MAGIC, MAGIC_ADDR

read_loop:
	/* The BIOS writes the count it transferred back into the packet. */
	movw	$SECTORS_PER_READ, dap_count
	movw	$dap, %si
	movb	$0x42, %ah
	movb	boot_drive, %dl
	int	$0x13
	/*
	 * A failed read (CF set) is not fatal: the point is to keep issuing
	 * requests, and the counter still shows the loop is alive.
	 */
	addl	$1, LOOP_COUNT
	addl	$SECTORS_PER_READ, dap_lba
	cmpl	$END_LBA, dap_lba
	jb	read_loop
	movl	$FIRST_LBA, dap_lba
	jmp	read_loop

boot_drive:
	.byte	0

	/* Disk address packet for INT 13h AH=42h. */
	.balign	4
dap:
	.byte	0x10				/* size of this packet */
	.byte	0
dap_count:
	.word	SECTORS_PER_READ
	.word	0x0000				/* buffer offset */
	.word	BUFFER_SEGMENT			/* buffer segment */
dap_lba:
	.long	FIRST_LBA
	.long	0

	.org	510
	.word	0xaa55
