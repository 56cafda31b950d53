// A tiny header-only test harness for the C++ tests (one executable per
// tests/test_*.cpp, run by ctest).
//
//   TEST_CASE(parses_header) { CHECK(x == 1); CHECK_CLOSE(a, b, 1e-5); }
//   CHECK_THROWS_WITH(open("bad"), "truncated");
//   SDXL_TEST_MAIN()
//
// A failed CHECK prints file:line and the expression, marks the case failed
// and goes on; an exception escaping a case fails that case. main() prints
// "N passed, N failed" and returns non-zero when any case failed.
// Run one case: `test_x <substring of the case name>`.
#pragma once

#include <cmath>      // std::fabs, std::isnan
#include <cstdlib>    // std::getenv
#include <exception>  // std::exception
#include <functional> // std::function test bodies
#include <iostream>   // std::cerr reports
#include <sstream>    // std::ostringstream messages
#include <stdexcept>  // std::runtime_error
#include <string>
#include <vector>

namespace sdxl::test {

// ----------------------------------------------------------------------------
// Registry

struct TestCase {
  std::string name;
  std::function<void()> body;
};

inline std::vector<TestCase>& registry() {
  static std::vector<TestCase> cases;
  return cases;
}

struct Registrar {
  Registrar(const char* name, std::function<void()> body) { registry().push_back({name, std::move(body)}); }
};

// Failures of the case that is running.
inline int& current_failures() {
  static int failures = 0;
  return failures;
}

inline void report_failure(const char* file, int line, const std::string& what) {
  ++current_failures();
  std::cerr << "  " << file << ":" << line << ": FAILED " << what << "\n";
}

// Where the read-only reference fixtures live (set by ctest from CMake).
inline std::string fixtures_dir() {
  const char* dir = std::getenv("SDXL_FIXTURES_DIR");
  if (dir == nullptr || *dir == '\0') throw std::runtime_error("SDXL_FIXTURES_DIR is not set");
  return dir;
}

// ----------------------------------------------------------------------------
// Runner

inline int run_all(int argc, char** argv) {
  const std::string filter = argc > 1 ? argv[1] : "";
  int passed = 0, failed = 0;
  for (const auto& test_case : registry()) {
    if (!filter.empty() && test_case.name.find(filter) == std::string::npos) continue;
    current_failures() = 0;
    std::cerr << "[ RUN  ] " << test_case.name << "\n";
    try {
      test_case.body();
    } catch (const std::exception& e) {
      report_failure(test_case.name.c_str(), 0, std::string("uncaught exception: ") + e.what());
    } catch (...) {
      report_failure(test_case.name.c_str(), 0, "uncaught non-std exception");
    }
    const bool ok = current_failures() == 0;
    (ok ? passed : failed)++;
    std::cerr << (ok ? "[  OK  ] " : "[ FAIL ] ") << test_case.name << "\n";
  }
  std::cout << passed << " passed, " << failed << " failed\n";
  return failed == 0 && passed > 0 ? 0 : 1;
}

} // namespace sdxl::test

// ----------------------------------------------------------------------------
// Macros

#define SDXL_TEST_CONCAT_INNER(a, b) a##b
#define SDXL_TEST_CONCAT(a, b) SDXL_TEST_CONCAT_INNER(a, b)

#define TEST_CASE(name)                                                                   \
  static void SDXL_TEST_CONCAT(test_body_, name)();                                       \
  static const ::sdxl::test::Registrar SDXL_TEST_CONCAT(test_registrar_, name){           \
      #name, &SDXL_TEST_CONCAT(test_body_, name)};                                        \
  static void SDXL_TEST_CONCAT(test_body_, name)()

// glog (under Debian's libtorch) defines a CHECK that aborts; ours reports and goes on.
#ifdef CHECK
#undef CHECK
#endif
#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) ::sdxl::test::report_failure(__FILE__, __LINE__, #cond);   \
  } while (0)

// |a - b| <= tol, as doubles; NaN never passes.
#define CHECK_CLOSE(a, b, tol)                                                               \
  do {                                                                                       \
    const double check_a_ = static_cast<double>(a), check_b_ = static_cast<double>(b);       \
    const double check_tol_ = static_cast<double>(tol);                                      \
    if (!(std::fabs(check_a_ - check_b_) <= check_tol_)) {                                   \
      std::ostringstream check_msg_;                                                         \
      check_msg_ << "CHECK_CLOSE(" #a ", " #b ", " #tol "): " << check_a_ << " vs "          \
                 << check_b_ << " (|diff| " << std::fabs(check_a_ - check_b_) << ")";        \
      ::sdxl::test::report_failure(__FILE__, __LINE__, check_msg_.str());                    \
    }                                                                                        \
  } while (0)

// expr must throw a std::exception whose what() contains substring.
#define CHECK_THROWS_WITH(expr, substring)                                                   \
  do {                                                                                       \
    bool check_threw_ = false;                                                               \
    try {                                                                                    \
      (void)(expr);                                                                          \
    } catch (const std::exception& check_e_) {                                               \
      check_threw_ = true;                                                                   \
      const std::string check_what_ = check_e_.what();                                       \
      if (check_what_.find(substring) == std::string::npos)                                  \
        ::sdxl::test::report_failure(__FILE__, __LINE__,                                     \
                                     std::string(#expr " threw \"") + check_what_ +          \
                                         "\", expected it to contain \"" + (substring) + "\""); \
    }                                                                                        \
    if (!check_threw_)                                                                       \
      ::sdxl::test::report_failure(__FILE__, __LINE__, #expr " did not throw");              \
  } while (0)

#define SDXL_TEST_MAIN() \
  int main(int argc, char** argv) { return ::sdxl::test::run_all(argc, argv); }
