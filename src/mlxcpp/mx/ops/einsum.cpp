// einsum: NumPy's subscript language (explicit and implicit output, '...'
// broadcasting, repeated subscripts for diagonals and traces) reduced to
// diagonals, sums and a greedy sequence of pairwise batched matmuls.
#include <algorithm>
#include <map>
#include <numeric>
#include <sstream>

#include "mlxcpp/mx/ops.h"

namespace mx {

namespace {

// Labels are the subscript's character codes; dims covered by '...' get
// kEllipsis + their position in the broadcast ellipsis (right-aligned).
constexpr int kEllipsis = 256;
constexpr int kEllipsisMarker = -1;

[[noreturn]] void fail(const std::string& subscripts, const std::string& why) {
  throw std::invalid_argument("[einsum] " + why + " (subscripts \"" + subscripts + "\")");
}

// Letters as character codes, with kEllipsisMarker where "..." stands.
std::vector<int> parse_term(const std::string& term, const std::string& subscripts) {
  std::vector<int> out;
  bool seen_ellipsis = false;
  for (size_t i = 0; i < term.size(); ++i) {
    char c = term[i];
    if (c == '.') {
      if (term.compare(i, 3, "...") != 0) fail(subscripts, "a '.' that is not part of '...'");
      if (seen_ellipsis) fail(subscripts, "more than one '...' in one term");
      seen_ellipsis = true;
      out.push_back(kEllipsisMarker);
      i += 2;
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      out.push_back(static_cast<unsigned char>(c));
    } else {
      fail(subscripts, std::string("invalid character '") + c + "'");
    }
  }
  return out;
}

std::vector<int> expand_ellipsis(const std::vector<int>& parsed, int covered, int total) {
  std::vector<int> labels;
  for (int l : parsed) {
    if (l != kEllipsisMarker) {
      labels.push_back(l);
      continue;
    }
    for (int i = 0; i < covered; ++i) labels.push_back(kEllipsis + total - covered + i);
  }
  return labels;
}

struct Term {
  array x;
  std::vector<int> labels;
};

int position(const std::vector<int>& v, int l) {
  auto it = std::find(v.begin(), v.end(), l);
  return it == v.end() ? -1 : static_cast<int>(it - v.begin());
}
bool contains(const std::vector<int>& v, int l) { return position(v, l) >= 0; }

// The diagonal over axes p and q (equal sizes), appended as the last axis.
array diagonal_last(const array& x, int p, int q, S s) {
  int n = x.shape(p);
  std::vector<int> perm;
  for (int i = 0; i < static_cast<int>(x.ndim()); ++i) {
    if (i != p && i != q) perm.push_back(i);
  }
  perm.push_back(p);
  perm.push_back(q);
  array y = transpose(x, perm, s);
  Shape flat(y.shape().begin(), y.shape().end() - 2);
  flat.push_back(n * n);
  y = reshape(y, flat, s);
  Shape start(flat.size(), 0), stop = flat, strides(flat.size(), 1);
  strides.back() = n + 1;
  return slice(y, start, stop, strides, s);
}

// Sums away the labels of term t that neither the output nor any other live
// term uses.
void drop_unneeded(std::vector<Term>& terms, size_t t, const std::vector<int>& output, S s) {
  std::vector<int> axes, keep;
  for (size_t i = 0; i < terms[t].labels.size(); ++i) {
    int l = terms[t].labels[i];
    bool needed = contains(output, l);
    for (size_t u = 0; u < terms.size() && !needed; ++u) {
      needed = u != t && contains(terms[u].labels, l);
    }
    if (needed)
      keep.push_back(l);
    else
      axes.push_back(static_cast<int>(i));
  }
  if (axes.empty()) return;
  terms[t].x = sum(terms[t].x, axes, false, s);
  terms[t].labels = keep;
}

// Broadcasts x's size-1 dims to the sizes the labels have overall.
array broadcast_labels(const array& x, const std::vector<int>& labels,
                       const std::map<int, int>& sizes, S s) {
  Shape target;
  for (int l : labels) target.push_back(sizes.at(l));
  return target == x.shape() ? x : broadcast_to(x, target, s);
}

Term contract(const Term& a, const Term& b, const std::vector<int>& kept,
              const std::map<int, int>& sizes, S s) {
  std::vector<int> batch, contracted, free_a, free_b;
  for (int l : a.labels) {
    if (!contains(b.labels, l))
      free_a.push_back(l);
    else if (contains(kept, l))
      batch.push_back(l);
    else
      contracted.push_back(l);
  }
  for (int l : b.labels) {
    if (!contains(a.labels, l)) free_b.push_back(l);
  }
  auto size_of_labels = [&](const std::vector<int>& ls) {
    int64_t n = 1;
    for (int l : ls) n *= sizes.at(l);
    return static_cast<int>(n);
  };
  auto arrange = [&](const Term& t, std::vector<std::vector<int>> groups) {
    std::vector<int> perm, order;
    Shape shape;
    for (auto& g : groups) {
      for (int l : g) {
        perm.push_back(position(t.labels, l));
        order.push_back(l);
      }
      shape.push_back(size_of_labels(g));
    }
    array x = broadcast_labels(transpose(t.x, perm, s), order, sizes, s);
    return reshape(x, shape, s);
  };
  array x = arrange(a, {batch, free_a, contracted});
  array y = arrange(b, {batch, contracted, free_b});
  Term out{matmul(x, y, s), batch};
  out.labels.insert(out.labels.end(), free_a.begin(), free_a.end());
  out.labels.insert(out.labels.end(), free_b.begin(), free_b.end());
  Shape shape;
  for (int l : out.labels) shape.push_back(sizes.at(l));
  out.x = reshape(out.x, shape, s);
  return out;
}

}  // namespace

array einsum(const std::string& subscripts, const std::vector<array>& operands, S s) {
  std::string spec;
  for (char c : subscripts) {
    if (c != ' ') spec += c;
  }
  if (operands.empty()) fail(subscripts, "needs at least one operand");
  size_t arrow = spec.find("->");
  std::string lhs = spec.substr(0, arrow);
  std::vector<std::string> terms_str;
  for (size_t b = 0;;) {
    size_t e = lhs.find(',', b);
    terms_str.push_back(lhs.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  if (terms_str.size() != operands.size()) {
    fail(subscripts, "the subscripts name " + std::to_string(terms_str.size()) + " operands but " +
                         std::to_string(operands.size()) + " were given");
  }

  // Labels of each operand, with '...' expanded right-aligned across operands.
  std::vector<std::vector<int>> parsed;
  std::vector<int> covered;
  int ellipsis_dims = 0;
  for (size_t i = 0; i < operands.size(); ++i) {
    parsed.push_back(parse_term(terms_str[i], subscripts));
    int letters = static_cast<int>(std::count_if(parsed[i].begin(), parsed[i].end(),
                                                 [](int l) { return l != kEllipsisMarker; }));
    bool has_ellipsis = contains(parsed[i], kEllipsisMarker);
    int nd = static_cast<int>(operands[i].ndim());
    if (nd < letters || (!has_ellipsis && nd != letters)) {
      fail(subscripts, "operand " + std::to_string(i) + " has shape " +
                           shape_str(operands[i].shape()) + " but its term \"" + terms_str[i] +
                           "\" names " + std::to_string(letters) + " dimensions");
    }
    covered.push_back(nd - letters);
    ellipsis_dims = std::max(ellipsis_dims, nd - letters);
  }
  std::map<int, int> sizes;
  std::map<int, int> counts;
  Dtype dtype = operands[0].dtype();
  std::vector<Term> terms;
  for (size_t i = 0; i < operands.size(); ++i) {
    std::vector<int> labels = expand_ellipsis(parsed[i], covered[i], ellipsis_dims);
    for (size_t d = 0; d < labels.size(); ++d) {
      int l = labels[d], n = operands[i].shape(static_cast<int>(d));
      ++counts[l];
      auto it = sizes.find(l);
      if (it == sizes.end() || it->second == 1) {
        sizes[l] = n;
      } else if (n != 1 && n != it->second) {
        std::string name = l >= kEllipsis ? std::string("...") : std::string(1, char(l));
        fail(subscripts, "subscript '" + name + "' has sizes " + std::to_string(it->second) +
                             " and " + std::to_string(n) + " that do not broadcast");
      }
    }
    dtype = promote_types(dtype, operands[i].dtype());
    terms.push_back({operands[i], std::move(labels)});
  }

  std::vector<int> output;
  if (arrow != std::string::npos) {
    std::string rhs = spec.substr(arrow + 2);
    std::vector<int> parsed_out = parse_term(rhs, subscripts);
    if (ellipsis_dims > 0 && !contains(parsed_out, kEllipsisMarker)) {
      fail(subscripts, "the operands have dimensions under '...' but the output has no '...'");
    }
    output = expand_ellipsis(parsed_out, ellipsis_dims, ellipsis_dims);
    for (size_t i = 0; i < output.size(); ++i) {
      int l = output[i];
      if (l < kEllipsis && !counts.count(l)) {
        fail(subscripts, std::string("output subscript '") + char(l) + "' is in no input");
      }
      if (std::find(output.begin() + i + 1, output.end(), l) != output.end()) {
        fail(subscripts, std::string("output subscript '") + char(l) + "' is repeated");
      }
    }
  } else {
    // NumPy's implicit output: broadcast dims, then letters seen once, in ASCII order.
    for (int i = 0; i < ellipsis_dims; ++i) output.push_back(kEllipsis + i);
    for (auto& [l, c] : counts) {
      if (l < kEllipsis && c == 1) output.push_back(l);
    }
  }

  for (auto& t : terms) {
    if (t.x.dtype() != dtype) t.x = astype(t.x, dtype, s);
    // Repeated labels within a term select its diagonal.
    for (;;) {
      int p = -1, q = -1;
      for (size_t i = 0; i < t.labels.size() && p < 0; ++i) {
        for (size_t j = i + 1; j < t.labels.size(); ++j) {
          if (t.labels[i] == t.labels[j]) {
            p = static_cast<int>(i);
            q = static_cast<int>(j);
            break;
          }
        }
      }
      if (p < 0) break;
      if (t.x.shape(p) != t.x.shape(q)) {
        fail(subscripts, "a repeated subscript covers dimensions of sizes " +
                             std::to_string(t.x.shape(p)) + " and " + std::to_string(t.x.shape(q)));
      }
      int l = t.labels[p];
      t.x = diagonal_last(t.x, p, q, s);
      t.labels.erase(t.labels.begin() + q);
      t.labels.erase(t.labels.begin() + p);
      t.labels.push_back(l);
    }
  }

  // Greedy pairwise contraction: always the pair with the smallest result.
  while (terms.size() > 1) {
    for (size_t t = 0; t < terms.size(); ++t) drop_unneeded(terms, t, output, s);
    size_t bi = 0, bj = 1;
    int64_t best = -1;
    std::vector<int> best_kept;
    for (size_t i = 0; i < terms.size(); ++i) {
      for (size_t j = i + 1; j < terms.size(); ++j) {
        std::vector<int> kept;
        int64_t size = 1;
        auto consider = [&](int l) {
          if (contains(kept, l)) return;
          bool needed = contains(output, l);
          for (size_t u = 0; u < terms.size() && !needed; ++u) {
            needed = u != i && u != j && contains(terms[u].labels, l);
          }
          if (needed) {
            kept.push_back(l);
            size *= sizes.at(l);
          }
        };
        for (int l : terms[i].labels) consider(l);
        for (int l : terms[j].labels) consider(l);
        if (best < 0 || size < best) {
          best = size;
          bi = i;
          bj = j;
          best_kept = kept;
        }
      }
    }
    Term merged = contract(terms[bi], terms[bj], best_kept, sizes, s);
    terms.erase(terms.begin() + bj);
    terms.erase(terms.begin() + bi);
    terms.push_back(std::move(merged));
  }
  drop_unneeded(terms, 0, output, s);
  Term& t = terms[0];
  std::vector<int> perm;
  for (int l : output) perm.push_back(position(t.labels, l));
  array result = transpose(t.x, perm, s);
  return broadcast_labels(result, output, sizes, s);
}

}  // namespace mx
