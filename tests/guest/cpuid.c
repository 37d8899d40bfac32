/* CPUID through a site the rewriter sends to the guest-side entry code and
 * through one it must leave alone: the two answers agree, the flags and the
 * other registers come through the rewritten one unchanged, and every
 * feature the answers report works: its instruction runs (an unusable one
 * raises #UD, which kills the program natively and crashes the VM).
 * Usage: cpuid                 (run natively and in vessel: the same checks)
 *        cpuid brand HEX REAL  (in vessel, with a host CPUID table whose
 *                               leaf 0x80000002 EAX the test changed from
 *                               REAL to HEX: the rewritten site sees HEX;
 *                               the other one HEX where the host traps
 *                               `cpuid` and answers from the vCPU's table,
 *                               made of the same answers, or REAL where the
 *                               CPU answers by itself; it says which) */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <unistd.h>

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

/* ------------------------------------------------ features must be usable */

static const char* g_trying = "";

static void on_sigill(int sig) {
    (void)sig;
    static const char msg[] = "FAIL: a reported feature raised SIGILL: ";
    (void)!write(2, msg, sizeof msg - 1);
    (void)!write(2, g_trying, strlen(g_trying));
    (void)!write(2, "\n", 1);
    _exit(1);
}

static uint8_t g_buf[4096] __attribute__((aligned(64)));

static void use_sse3(void) { __asm__ volatile("addsubps %%xmm0, %%xmm0" ::: "xmm0"); }
static void use_pclmul(void) { __asm__ volatile("pclmulqdq $0, %%xmm0, %%xmm0" ::: "xmm0"); }
static void use_ssse3(void) { __asm__ volatile("pshufb %%xmm0, %%xmm0" ::: "xmm0"); }
static void use_fma(void) { __asm__ volatile("vfmadd231ps %%xmm0, %%xmm0, %%xmm0" ::: "xmm0"); }
static void use_cx16(void) {
    __asm__ volatile("xor %%eax, %%eax; xor %%edx, %%edx; xor %%ebx, %%ebx; xor %%ecx, %%ecx; lock cmpxchg16b %0"
                     : "+m"(*(uint8_t(*)[16])g_buf)::"rax", "rbx", "rcx", "rdx", "cc");
}
static void use_sse41(void) { __asm__ volatile("pmulld %%xmm0, %%xmm0" ::: "xmm0"); }
static void use_sse42(void) { __asm__ volatile("crc32 %%eax, %%eax" ::: "rax"); }
static void use_movbe(void) { __asm__ volatile("movbe %0, %%eax" ::"m"(*(uint32_t*)g_buf) : "rax"); }
static void use_popcnt(void) { __asm__ volatile("popcnt %%eax, %%eax" ::: "rax", "cc"); }
static void use_aes(void) { __asm__ volatile("aesenc %%xmm0, %%xmm0" ::: "xmm0"); }
static void use_xgetbv(void) { __asm__ volatile("xor %%ecx, %%ecx; xgetbv" ::: "rax", "rcx", "rdx"); }
static void use_avx(void) { __asm__ volatile("vxorps %%ymm0, %%ymm0, %%ymm0" ::: "xmm0"); }
static void use_f16c(void) { __asm__ volatile("vcvtph2ps %%xmm0, %%ymm0" ::: "xmm0"); }
static void use_rdrand(void) { __asm__ volatile("rdrand %%eax" ::: "rax", "cc"); }
static void use_fsgsbase(void) { __asm__ volatile("rdfsbase %%rax" ::: "rax"); }
static void use_bmi1(void) { __asm__ volatile("andn %%eax, %%eax, %%eax" ::: "rax", "cc"); }
static void use_avx2(void) { __asm__ volatile("vpaddd %%ymm0, %%ymm0, %%ymm0" ::: "xmm0"); }
static void use_bmi2(void) { __asm__ volatile("pdep %%eax, %%eax, %%eax" ::: "rax"); }
static void use_avx512f(void) { __asm__ volatile("vpxord %%zmm0, %%zmm0, %%zmm0" ::: "xmm0"); }
static void use_rdseed(void) { __asm__ volatile("rdseed %%eax" ::: "rax", "cc"); }
static void use_adx(void) { __asm__ volatile("adcx %%eax, %%eax" ::: "rax", "cc"); }
static void use_clflushopt(void) { __asm__ volatile("clflushopt %0" ::"m"(g_buf[0])); }
static void use_clwb(void) { __asm__ volatile("clwb %0" ::"m"(g_buf[0])); }
static void use_sha(void) { __asm__ volatile("sha1nexte %%xmm0, %%xmm0" ::: "xmm0"); }
static void use_avx512bw(void) { __asm__ volatile("vpaddb %%zmm0, %%zmm0, %%zmm0" ::: "xmm0"); }
static void use_avx512vl(void) { __asm__ volatile("vpxord %%ymm0, %%ymm0, %%ymm0" ::: "xmm0"); }
static void use_gfni(void) { __asm__ volatile("gf2p8mulb %%xmm0, %%xmm0" ::: "xmm0"); }
static void use_vaes(void) { __asm__ volatile("vaesenc %%ymm0, %%ymm0, %%ymm0" ::: "xmm0"); }
static void use_vpclmul(void) { __asm__ volatile("vpclmulqdq $0, %%ymm0, %%ymm0, %%ymm0" ::: "xmm0"); }
static void use_rdpid(void) { __asm__ volatile("rdpid %%rax" ::: "rax"); }
static void use_pku(void) { __asm__ volatile("xor %%ecx, %%ecx; rdpkru" ::: "rax", "rcx", "rdx"); }
static void use_lzcnt(void) { __asm__ volatile("lzcnt %%eax, %%eax" ::: "rax", "cc"); }
static void use_prefetchw(void) { __asm__ volatile("prefetchw %0" ::"m"(g_buf[0])); }
static void use_rdtscp(void) { __asm__ volatile("rdtscp" ::: "rax", "rcx", "rdx"); }
static void use_xsaveopt(void) {
    __asm__ volatile("mov $3, %%eax; xor %%edx, %%edx; xsaveopt %0" : "=m"(*(uint8_t(*)[1024])g_buf)::"rax", "rdx");
}
static void use_xsavec(void) {
    memset(g_buf, 0, 1024);
    __asm__ volatile("mov $3, %%eax; xor %%edx, %%edx; xsavec %0" : "=m"(*(uint8_t(*)[1024])g_buf)::"rax", "rdx");
}

/* Only features an instruction at CPL3 shows; the others (kernel-only ones,
 * descriptions of caches) have nothing to run. */
struct feature {
    uint32_t leaf, subleaf;
    char reg; /* a b c d */
    int bit;
    uint64_t xcr0; /* state the OS must have enabled too (Linux's rule) */
    const char* name;
    void (*use)(void);
};

#define YMM 0x7ull
#define ZMM 0xe7ull
static const struct feature features[] = {
    {1, 0, 'c', 0, 0, "sse3", use_sse3},          {1, 0, 'c', 1, 0, "pclmulqdq", use_pclmul},
    {1, 0, 'c', 9, 0, "ssse3", use_ssse3},        {1, 0, 'c', 12, YMM, "fma", use_fma},
    {1, 0, 'c', 13, 0, "cx16", use_cx16},         {1, 0, 'c', 19, 0, "sse4.1", use_sse41},
    {1, 0, 'c', 20, 0, "sse4.2", use_sse42},      {1, 0, 'c', 22, 0, "movbe", use_movbe},
    {1, 0, 'c', 23, 0, "popcnt", use_popcnt},     {1, 0, 'c', 25, 0, "aes", use_aes},
    {1, 0, 'c', 27, 0, "osxsave", use_xgetbv},    {1, 0, 'c', 28, YMM, "avx", use_avx},
    {1, 0, 'c', 29, YMM, "f16c", use_f16c},       {1, 0, 'c', 30, 0, "rdrand", use_rdrand},
    {7, 0, 'b', 3, 0, "bmi1", use_bmi1},          {7, 0, 'b', 5, YMM, "avx2", use_avx2},
    {7, 0, 'b', 8, 0, "bmi2", use_bmi2},          {7, 0, 'b', 16, ZMM, "avx512f", use_avx512f},
    {7, 0, 'b', 18, 0, "rdseed", use_rdseed},     {7, 0, 'b', 19, 0, "adx", use_adx},
    {7, 0, 'b', 23, 0, "clflushopt", use_clflushopt}, {7, 0, 'b', 24, 0, "clwb", use_clwb},
    {7, 0, 'b', 29, 0, "sha", use_sha},           {7, 0, 'b', 30, ZMM, "avx512bw", use_avx512bw},
    {7, 0, 'b', 31, ZMM, "avx512vl", use_avx512vl}, {7, 0, 'c', 4, 0, "ospke", use_pku},
    {7, 0, 'c', 8, 0, "gfni", use_gfni},          {7, 0, 'c', 9, YMM, "vaes", use_vaes},
    {7, 0, 'c', 10, YMM, "vpclmulqdq", use_vpclmul}, {7, 0, 'c', 22, 0, "rdpid", use_rdpid},
    {0xd, 1, 'a', 0, 0, "xsaveopt", use_xsaveopt}, {0xd, 1, 'a', 1, 0, "xsavec", use_xsavec},
    {0x80000001, 0, 'c', 5, 0, "lzcnt", use_lzcnt}, {0x80000001, 0, 'c', 8, 0, "prefetchw", use_prefetchw},
    {0x80000001, 0, 'd', 27, 0, "rdtscp", use_rdtscp},
};

static uint64_t xcr0(struct regs leaf1) {
    if (!(leaf1.c & (1u << 27))) return 0;
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

/* Runs the instruction of every feature the rewritten site reports (what
 * glibc's feature selection reads). Returns how many ran. */
static int use_reported_features(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigill;
    sigaction(SIGILL, &sa, NULL);
    int carry_kept, regs_kept, used = 0;
    const uint32_t max_basic = rewritten(0, 0, &carry_kept, &regs_kept).a;
    const uint32_t max_ext = rewritten(0x80000000, 0, &carry_kept, &regs_kept).a;
    const uint64_t enabled = xcr0(rewritten(1, 0, &carry_kept, &regs_kept));
    for (size_t i = 0; i < sizeof features / sizeof features[0]; ++i) {
        const struct feature* f = &features[i];
        if (f->leaf >= 0x80000000 ? f->leaf > max_ext : f->leaf > max_basic) continue;
        struct regs r = rewritten(f->leaf, f->subleaf, &carry_kept, &regs_kept);
        const uint32_t word = f->reg == 'a' ? r.a : f->reg == 'b' ? r.b : f->reg == 'c' ? r.c : r.d;
        if (!(word & (1u << f->bit)) || (enabled & f->xcr0) != f->xcr0) continue;
        g_trying = f->name;
        f->use();
        ++used;
    }
    /* FSGSBASE: the CPU may have it while the kernel keeps it off (CR4):
     * Linux says which in AT_HWCAP2, and so must Vessel. */
    if (getauxval(AT_HWCAP2) & 2) {
        g_trying = "fsgsbase (AT_HWCAP2)";
        use_fsgsbase();
        ++used;
    }
    return used;
}

int main(int argc, char** argv) {
    const int brand = argc == 4 && strcmp(argv[1], "brand") == 0;
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
        const uint32_t real = (uint32_t)strtoul(argv[3], NULL, 16);
        CHECK(rewritten(0x80000002, 0, &carry_kept, &regs_kept).a == planted);
        const uint32_t other = native(0x80000002, 0).a;
        CHECK(other == planted || other == real);
        printf("un-rewritten cpuid answered by %s\n", other == planted ? "the vCPU's table" : "the CPU");
        CHECK(carry_kept && regs_kept);
    }
    /* The common ones at least: SSE3 and popcnt are in every x86-64 CPU of
     * the last fifteen years, so a run that tried nothing proves nothing. */
    CHECK(use_reported_features() >= 2);
    return finish("cpuid");
}
