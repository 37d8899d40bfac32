/* CPUID through a site the rewriter sends to the guest-side entry code and
 * through one it must leave alone: the two answers agree, and the flags and
 * the other registers come through the rewritten one unchanged.
 * Usage: cpuid                 (run natively and in vessel: the same checks)
 *        cpuid brand HEX       (in vessel, with a host CPUID table whose
 *                               leaf 0x80000002 EAX the test changed to HEX:
 *                               only the rewritten site sees it) */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"

struct regs {
    uint32_t a, b, c, d;
};

/* `mov; mov; cpuid`: 4+ bytes of plain moves before it, a copy site. The
 * carry flag and RSI/RDI must survive it. */
static struct regs rewritten(uint32_t leaf, uint32_t subleaf, int* carry_kept, int* regs_kept) {
    struct regs r;
    uint8_t carry;
    uint64_t si = 0x1122334455667788ull, di = 0x8877665544332211ull;
    __asm__ volatile("stc\n\t"
                     "mov %k[leaf], %%eax\n\t"
                     "mov %k[subleaf], %%ecx\n\t"
                     "cpuid\n\t"
                     "setc %[carry]"
                     : "=&a"(r.a), "=&b"(r.b), "=&c"(r.c), "=&d"(r.d), [carry] "=&r"(carry), "+S"(si), "+D"(di)
                     : [leaf] "r"(leaf), [subleaf] "r"(subleaf)
                     : "cc");
    *carry_kept = carry == 1;
    *regs_kept = si == 0x1122334455667788ull && di == 0x8877665544332211ull;
    return r;
}

/* A RIP-relative instruction right before it: no room for a jump, so the
 * real instruction runs. */
static struct regs native(uint32_t leaf, uint32_t subleaf) {
    struct regs r;
    __asm__ volatile("mov %k[leaf], %%eax\n\t"
                     "mov %k[subleaf], %%ecx\n\t"
                     "lea 0(%%rip), %%rbx\n\t"
                     "cpuid"
                     : "=&a"(r.a), "=&b"(r.b), "=&c"(r.c), "=&d"(r.d)
                     : [leaf] "r"(leaf), [subleaf] "r"(subleaf));
    return r;
}

/* Fields that name the CPU the instruction ran on (APIC IDs) may differ
 * between two asks. */
static struct regs masked(uint32_t leaf, struct regs r) {
    if (leaf == 1) r.b &= 0x00ffffff;
    if (leaf == 0xb || leaf == 0x1f || leaf == 0x80000026) r.d = 0;
    if (leaf == 0x8000001e) r.a = r.b = 0;
    return r;
}

static int same(struct regs x, struct regs y) { return x.a == y.a && x.b == y.b && x.c == y.c && x.d == y.d; }

int main(int argc, char** argv) {
    const int brand = argc == 3 && strcmp(argv[1], "brand") == 0;
    static const uint32_t questions[][2] = {
        {0, 0},          {1, 0},          {1, 0x1234},     {4, 0},          {6, 0},          {7, 0},
        {7, 1},          {7, 5},          {0xb, 0},        {0xb, 1},        {0xd, 0},        {0xd, 1},
        {0xd, 2},        {0xd, 3},        {0xd, 7},        {0xd, 40},       {0x14, 0},       {0x19, 0},
        {0x3fffffff, 0}, {0x40000000, 0}, {0x80000000, 0}, {0x80000001, 0}, {0x80000002, 0}, {0x80000005, 0},
        {0x80000006, 0}, {0x80000007, 0}, {0x80000008, 0}, {0x8000001d, 0}, {0x8000001d, 3}, {0x8000001d, 9},
        {0x8000001e, 0}, {0x80000021, 0}, {0x8fffffff, 0},
    };
    for (size_t i = 0; i < sizeof questions / sizeof questions[0]; ++i) {
        const uint32_t leaf = questions[i][0], subleaf = questions[i][1];
        int carry_kept, regs_kept;
        struct regs r = rewritten(leaf, subleaf, &carry_kept, &regs_kept);
        CHECK(carry_kept);
        CHECK(regs_kept);
        if (brand && leaf == 0x80000002) continue;  /* planted: checked below */
        if (!same(masked(leaf, r), masked(leaf, native(leaf, subleaf))))
            fprintf(stderr, "leaf %#x.%u: rewritten %08x %08x %08x %08x, native differs\n", leaf, subleaf, r.a, r.b,
                    r.c, r.d);
        CHECK(same(masked(leaf, r), masked(leaf, native(leaf, subleaf))));
    }
    if (brand) {
        const uint32_t planted = (uint32_t)strtoul(argv[2], NULL, 16);
        int carry_kept, regs_kept;
        CHECK(rewritten(0x80000002, 0, &carry_kept, &regs_kept).a == planted);
        CHECK(native(0x80000002, 0).a != planted);
        CHECK(carry_kept && regs_kept);
    }
    return finish("cpuid");
}
