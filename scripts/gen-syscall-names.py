#!/usr/bin/env python3
"""Prints src/thin/syscall_names.inc from the host's <asm/unistd_64.h>."""
import re

names = {}
with open('/usr/include/x86_64-linux-gnu/asm/unistd_64.h') as f:
    for line in f:
        m = re.match(r'#define __NR_(\w+) (\d+)', line)
        if m:
            names[int(m.group(2))] = m.group(1)
print('// Generated from <asm/unistd_64.h> (Linux x86-64 syscall numbers); one entry per number.')
print('// Regenerate with: scripts/gen-syscall-names.py > src/thin/syscall_names.inc')
for n in sorted(names):
    print(f'    {{{n}, "{names[n]}"}},')
