/*
 * cpumodel 0.1.0: C header for a64fx (profiles/a64fx.yaml)
 * Write each register with KVM_SET_ONE_REG (Documentation/virt/kvm/api.rst 4.68), in this order,
 * after KVM_ARM_VCPU_INIT and before the first KVM_RUN of any vCPU: ID registers are immutable once
 * a vCPU has run (a different value answers EBUSY), may be VM-scoped, and should be written before
 * the rest of the vCPU's registers (Documentation/virt/kvm/arm/vcpu-features.rst, 'The ID Registers').
 * KVM_ARM_VCPU_INIT features (api.rst 4.82): not given by the profile (the VMM's defaults apply)
 * MIDR_EL1, REVIDR_EL1: a value other than the host's needs KVM_CAP_ARM_WRITABLE_IMP_ID_REGS (239) enabled
 * on the VM before any vCPU is created (api.rst 7.42); without it KVM answers EINVAL.
 * Each entry is one struct kvm_one_reg: .id is the one-reg ID, .addr points at .value.
 */
#ifndef CPUMODEL_A64FX_H
#define CPUMODEL_A64FX_H

#include <stdint.h>

#ifndef CPUMODEL_REG_DEFINED
#define CPUMODEL_REG_DEFINED
struct cpumodel_reg {
	uint64_t id;	/* KVM one-reg ID */
	uint64_t value;	/* 64-bit register value */
};
#endif

#define CPUMODEL_A64FX_NREGS 17
static const struct cpumodel_reg cpumodel_a64fx_regs[CPUMODEL_A64FX_NREGS] = {
	{ UINT64_C(0x603000000013c000), UINT64_C(0x00000000461f0010) },	/* MIDR_EL1 S3_0_C0_C0_0 */
	{ UINT64_C(0x603000000013c006), UINT64_C(0x0000000000000000) },	/* REVIDR_EL1 S3_0_C0_C0_6 */
	{ UINT64_C(0x603000000013c020), UINT64_C(0x0000000101111111) },	/* ID_AA64PFR0_EL1 S3_0_C0_C4_0 */
	{ UINT64_C(0x603000000013c021), UINT64_C(0x0000000000000000) },	/* ID_AA64PFR1_EL1 S3_0_C0_C4_1 */
	{ UINT64_C(0x603000000013c022), UINT64_C(0x0000000000000000) },	/* ID_AA64PFR2_EL1 S3_0_C0_C4_2 */
	{ UINT64_C(0x603000000013c024), UINT64_C(0x0000000000000000) },	/* ID_AA64ZFR0_EL1 S3_0_C0_C4_4 */
	{ UINT64_C(0x603000000013c028), UINT64_C(0x0000000010305408) },	/* ID_AA64DFR0_EL1 S3_0_C0_C5_0 */
	{ UINT64_C(0x603000000013c029), UINT64_C(0x0000000000000000) },	/* ID_AA64DFR1_EL1 S3_0_C0_C5_1 */
	{ UINT64_C(0x603000000013c02c), UINT64_C(0x0000000000000000) },	/* ID_AA64AFR0_EL1 S3_0_C0_C5_4 */
	{ UINT64_C(0x603000000013c02d), UINT64_C(0x0000000000000000) },	/* ID_AA64AFR1_EL1 S3_0_C0_C5_5 */
	{ UINT64_C(0x603000000013c030), UINT64_C(0x0000000010211120) },	/* ID_AA64ISAR0_EL1 S3_0_C0_C6_0 */
	{ UINT64_C(0x603000000013c031), UINT64_C(0x0000000000010001) },	/* ID_AA64ISAR1_EL1 S3_0_C0_C6_1 */
	{ UINT64_C(0x603000000013c038), UINT64_C(0x0000000000001122) },	/* ID_AA64MMFR0_EL1 S3_0_C0_C7_0 */
	{ UINT64_C(0x603000000013c039), UINT64_C(0x0000000011212100) },	/* ID_AA64MMFR1_EL1 S3_0_C0_C7_1 */
	{ UINT64_C(0x603000000013c03a), UINT64_C(0x0000000000001011) },	/* ID_AA64MMFR2_EL1 S3_0_C0_C7_2 */
	{ UINT64_C(0x603000000013c801), UINT64_C(0x0000000080000023) },	/* CLIDR_EL1 S3_1_C0_C0_1 */
	{ UINT64_C(0x603000000013d801), UINT64_C(0x0000000086668006) },	/* CTR_EL0 S3_3_C0_C0_1 */
};
/* Not written (KVM has no one-reg for them, so no VMM can set them):
 *   DCZID_EL0 = 0x0000000000000006: KVM has no one-reg for DCZID_EL0 (not in sys_reg_descs[], Linux 6.12-7.3); the guest reads the host's DCZID_EL0
 */

#endif /* CPUMODEL_A64FX_H */
