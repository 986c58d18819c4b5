// mx::nn in one include: the Module tree, layers, activations and losses.
#pragma once

#include "mlxcpp/nn/activations.h"
#include "mlxcpp/nn/layers.h"
#include "mlxcpp/nn/losses.h"
#include "mlxcpp/nn/module.h"
