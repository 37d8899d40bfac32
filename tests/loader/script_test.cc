// `#!` lines read as Linux's binfmt_script reads them.
#include <gtest/gtest.h>

#include "loader/script.h"

namespace vessel::loader {
namespace {

Result<std::optional<Shebang>> parse(const std::string& text) {
    return parse_shebang(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

TEST(Shebang, NotAScript) {
    for (const char* text : {"", "#",
                             "\x7f"
                             "ELF",
                             "# !/bin/sh\n"}) {
        auto r = parse(text);
        ASSERT_TRUE(r.has_value()) << text;
        EXPECT_FALSE(r->has_value()) << text;
    }
}

TEST(Shebang, InterpreterAndOneArgumentAsLinuxSplitsThem) {
    using namespace std::string_literals;
    struct Case {
        std::string text;
        const char *interp, *arg;
    };
    for (const Case& c :
         {Case{"#!/bin/sh\necho hi\n", "/bin/sh", nullptr}, Case{"#! \t/bin/sh \t\n", "/bin/sh", nullptr},
          Case{"#!/usr/bin/env python3 -u \n", "/usr/bin/env", "python3 -u"},
          Case{"#!/bin/busybox sh", "/bin/busybox", "sh"},  // a whole file
          Case{"#!/bin/true", "/bin/true", nullptr}, Case{"#!/bin/awk -f\0ignored"s, "/bin/awk", "-f"}}) {
        auto r = parse(c.text);
        ASSERT_TRUE(r.has_value() && r->has_value()) << c.text;
        EXPECT_EQ((*r)->interpreter, c.interp) << c.text;
        if (c.arg)
            EXPECT_EQ((*r)->argument, std::optional<std::string>(c.arg)) << c.text;
        else
            EXPECT_FALSE((*r)->argument.has_value()) << c.text;
    }
}

TEST(Shebang, RefusedLines) {
    auto empty = parse("#!   \n/bin/sh\n");
    ASSERT_FALSE(empty.has_value());
    EXPECT_EQ(empty.error().sys_errno, ENOEXEC);
    // An interpreter name cut by the 256-byte buffer is refused; a long
    // argument is cut, as Linux cuts it.
    auto long_name = parse("#!/" + std::string(300, 'x') + "\n");
    ASSERT_FALSE(long_name.has_value());
    EXPECT_NE(long_name.error().message.find("too long"), std::string::npos);
    auto long_arg = parse("#!/bin/sh " + std::string(300, 'a') + "\n");
    ASSERT_TRUE(long_arg.has_value() && long_arg->has_value());
    EXPECT_EQ((*long_arg)->argument->size(), kShebangMax - 10);
}

}  // namespace
}  // namespace vessel::loader
