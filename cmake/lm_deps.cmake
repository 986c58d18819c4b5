# Libraries the lm tokenizer needs in libmlxcpp: PCRE2 (Unicode regex for pre-tokenizers and
# Split patterns) and utf8proc (Unicode normalization and character properties). Debian:
# libpcre2-dev, libutf8proc-dev (and liblzma-dev, below). Included from the top CMakeLists.txt.
find_path(MLXCPP_PCRE2_INCLUDE_DIR pcre2.h REQUIRED)
find_library(MLXCPP_PCRE2_LIBRARY NAMES pcre2-8 REQUIRED)
find_path(MLXCPP_UTF8PROC_INCLUDE_DIR utf8proc.h REQUIRED)
find_library(MLXCPP_UTF8PROC_LIBRARY NAMES utf8proc REQUIRED)
list(APPEND MLXCPP_EXTRA_PRIVATE_LIBS ${MLXCPP_PCRE2_LIBRARY} ${MLXCPP_UTF8PROC_LIBRARY})
# liblzma (Debian liblzma-dev): random-model unpacks the bundled Gemma 3 tokenizer (.xz).
find_path(MLXCPP_LZMA_INCLUDE_DIR lzma.h REQUIRED)
find_library(MLXCPP_LZMA_LIBRARY NAMES lzma REQUIRED)
list(APPEND MLXCPP_EXTRA_PRIVATE_LIBS ${MLXCPP_LZMA_LIBRARY})
# cpp-httplib (Debian libcpp-httplib-dev): the HTTP layer of `mlxcpp server` (lm/server/).
pkg_check_modules(MLXCPP_HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
list(APPEND MLXCPP_EXTRA_PRIVATE_LIBS PkgConfig::MLXCPP_HTTPLIB)
