// Uses the installed library: builds a small graph, differentiates it and
// checks the result (exit status 0 when right).
#include <mlxcpp/mx.h>

#include <cmath>
#include <iostream>

int main() {
  mx::array x = mx::reshape(mx::arange(6.0f), {2, 3});
  auto f = [](const mx::array& a) { return mx::sum(mx::square(a)); };
  mx::array g = mx::grad(f)(x);  // d/dx sum(x^2) = 2x
  std::cout << g << "\n";
  bool ok = mx::allclose(g, mx::multiply(x, mx::array(2.0f))).item<bool>();
  std::cout << (ok ? "ok" : "wrong gradient") << "\n";
  return ok ? 0 : 1;
}
