// Layering is enforced, not described: each src/ directory's README.md ends
// with a "May include: a, b" line (../shared/ARCHITECTURE.md, "Layers"), and
// every `#include "dir/..."` under that directory names itself or one of
// those. A lower layer that includes a higher one fails here.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// The directories named by the README's "May include:" line; nullopt-like
// `found` false when the line is missing.
struct AllowList {
    bool found = false;
    std::set<std::string> dirs;
};

AllowList allow_list(const fs::path& readme) {
    AllowList a;
    const std::string text = slurp(readme);
    std::smatch m;
    if (!std::regex_search(text, m, std::regex(R"((^|\n)May include: ([^\n]*))"))) return a;
    a.found = true;
    const std::string line = m[2];
    const std::string list = line.substr(0, line.find('('));  // "(...)" is prose
    const std::regex word(R"([a-z0-9_]+)");
    for (std::sregex_iterator it(list.begin(), list.end(), word), end; it != end; ++it) a.dirs.insert(it->str());
    return a;
}

// "file:line: includes X" for every quoted include of a directory outside
// `layer` and its allow-list.
std::vector<std::string> violations(const fs::path& src, const std::string& layer, const AllowList& allowed) {
    std::vector<std::string> out;
    const std::regex include(R"(^\s*#\s*include\s+"([a-z0-9_]+)/)");
    for (const auto& e : fs::recursive_directory_iterator(src / layer)) {
        if (!e.is_regular_file()) continue;
        const std::string ext = e.path().extension();
        if (ext != ".h" && ext != ".cc" && ext != ".S" && ext != ".inc") continue;
        std::ifstream in(e.path());
        std::string line;
        for (int n = 1; std::getline(in, line); ++n) {
            std::smatch m;
            if (!std::regex_search(line, m, include)) continue;
            const std::string dir = m[1];
            if (dir != layer && !allowed.dirs.count(dir))
                out.push_back(fs::relative(e.path(), src).string() + ":" + std::to_string(n) + ": includes " + dir +
                              "/");
        }
    }
    return out;
}

TEST(Layering, EveryIncludeIsAllowedByItsDirectorysReadme) {
    const fs::path src = fs::path(VESSEL_SOURCE_DIR) / "src";
    int layers = 0;
    for (const auto& e : fs::directory_iterator(src)) {
        if (!e.is_directory()) continue;
        const std::string layer = e.path().filename();
        const AllowList allowed = allow_list(e.path() / "README.md");
        EXPECT_TRUE(allowed.found) << "src/" << layer << "/README.md has no 'May include:' line";
        std::string list;
        for (const auto& v : violations(src, layer, allowed)) list += "\n  " + v;
        EXPECT_TRUE(list.empty()) << "src/" << layer << " reaches outside its README's allow-list:" << list;
        ++layers;
    }
    EXPECT_GE(layers, 10);
}

// The check itself: a planted upward include is found.
TEST(Layering, AnUpwardIncludeIsFound) {
    const fs::path tmp = fs::temp_directory_path() / ("vessel-layering-" + std::to_string(::getpid()));
    fs::create_directories(tmp / "base");
    std::ofstream(tmp / "base" / "README.md") << "# base/\n\nMay include: (nothing)\n";
    std::ofstream(tmp / "base" / "ok.h") << "#include <vector>\n#include \"base/result.h\"\n";
    std::ofstream(tmp / "base" / "bad.cc") << "// x\n#include \"machine/thin_vm.h\"\n";
    const AllowList allowed = allow_list(tmp / "base" / "README.md");
    EXPECT_TRUE(allowed.found);
    const auto v = violations(tmp, "base", allowed);
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0], "base/bad.cc:2: includes machine/");
    fs::remove_all(tmp);
}

}  // namespace
