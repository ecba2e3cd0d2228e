#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

namespace distill {

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::shared_ptr<void> aligned_alloc_shared(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) fail("out of memory allocating {} bytes", bytes);
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  for (int64_t d : shape) DISTILL_ASSERT_MSG(d >= 0, "negative dimension in {}", shape_str(shape));
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.owner_ = aligned_alloc_shared(t.nbytes());
  t.data_ = t.owner_.get();
  return t;
}

Tensor Tensor::view(DType dtype, Shape shape, void* data, std::shared_ptr<void> owner) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.data_ = data;
  t.owner_ = std::move(owner);
  return t;
}

Tensor Tensor::reshaped(Shape shape) const {
  DISTILL_ASSERT_MSG(shape_numel(shape) == numel(), "reshape {} -> {}", shape_str(shape_), shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  t.prepared_.reset();
  return t;
}

Tensor Tensor::subview(int64_t offset, Shape shape) const {
  DISTILL_ASSERT_MSG(offset >= 0 && offset + shape_numel(shape) <= numel(), "subview {} at {} of {}",
                     shape_str(shape), offset, shape_str(shape_));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  t.data_ = static_cast<char*>(data_) + dtype_bytes(dtype_, offset);
  t.prepared_.reset();
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  DISTILL_ASSERT(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0]);
  const size_t row_bytes = shape_[0] == 0 ? 0 : nbytes() / size_t(shape_[0]);
  Tensor t = *this;
  t.shape_[0] = end - begin;
  t.data_ = static_cast<char*>(data_) + size_t(begin) * row_bytes;
  t.prepared_.reset();
  return t;
}

Tensor Tensor::to(DType dtype) const {
  Tensor out = zeros(dtype, shape_);
  if (dtype == dtype_) {
    std::memcpy(out.raw(), raw(), nbytes());
  } else if (dtype == DType::F32) {
    convert_to_f32(out.data<float>(), raw(), dtype_, size_t(numel()));
  } else {
    Tensor f32 = to(DType::F32);
    convert_from_f32(out.raw(), dtype, f32.data<float>(), size_t(numel()));
  }
  return out;
}

}  // namespace distill
