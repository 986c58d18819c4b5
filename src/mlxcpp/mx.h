// The mx core in one include: arrays, ops, transforms, devices, memory, io.
#pragma once

#include "mlxcpp/mx/allocator.h"
#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/device.h"
#include "mlxcpp/mx/dtype.h"
#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/fft.h"
#include "mlxcpp/mx/linalg.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/quantized.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/mx/transforms.h"
