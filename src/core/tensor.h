// Tensor: a dtype, a shape and contiguous row-major storage that is either owned (64-byte
// aligned heap memory) or a view into memory kept alive by someone else (an mmapped file, an
// arena). Copying a Tensor copies the handle, not the data.
#pragma once

#include "core/dtype.h"
#include "core/error.h"

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace distill {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& shape);  // "[2, 12, 96]"
int64_t shape_numel(const Shape& shape);

class Tensor {
public:
  Tensor() = default;

  // New owned, zero-filled storage.
  static Tensor zeros(DType dtype, Shape shape);
  // A view of `data`; `owner` (may be null) keeps that memory alive as long as the view exists.
  static Tensor view(DType dtype, Shape shape, void* data, std::shared_ptr<void> owner);

  bool defined() const { return data_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int ndim() const { return int(shape_.size()); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return dtype_bytes(dtype_, numel()); }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  template <typename T> T* data() { check_type<T>(); return static_cast<T*>(data_); }
  template <typename T> const T* data() const { check_type<T>(); return static_cast<const T*>(data_); }

  // Same storage, another shape with the same number of elements.
  Tensor reshaped(Shape shape) const;
  // `shape` elements of this tensor's dtype starting `offset` elements in, sharing storage.
  Tensor subview(int64_t offset, Shape shape) const;
  // Rows [begin, end) of the first dimension, sharing storage.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // An owned copy converted to `dtype` (F32/F16/BF16 only).
  Tensor to(DType dtype) const;

  // The kernels' load-time form of this tensor's data (kernels/kernels.h: prepare_weight), kept
  // beside it; null if none. Views with another shape or offset (reshaped, subview, slice_rows)
  // do not carry it.
  const void* prepared() const { return prepared_.get(); }
  void set_prepared(std::shared_ptr<const void> p) { prepared_ = std::move(p); }

private:
  template <typename T> void check_type() const;

  DType dtype_ = DType::F32;
  Shape shape_;
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;
  std::shared_ptr<const void> prepared_;
};

template <typename T> void Tensor::check_type() const {
  constexpr DType want = std::is_same_v<T, float>      ? DType::F32
                         : std::is_same_v<T, int32_t>  ? DType::I32
                         : std::is_same_v<T, int64_t>  ? DType::I64
                         : std::is_same_v<T, uint16_t> ? dtype_  // f16 / bf16 bits
                         : std::is_same_v<T, uint8_t>  ? DType::U8
                                                       : DType::U8;
  DISTILL_ASSERT_MSG(dtype_ == want || (std::is_same_v<T, uint16_t> && dtype_size(dtype_) == 2),
                     "tensor is {}", dtype_name(dtype_));
}

// Allocates `bytes` of 64-byte aligned memory, zero-filled, as a shared owner.
std::shared_ptr<void> aligned_alloc_shared(size_t bytes);

}  // namespace distill
