// Knowledge-distillation losses between a teacher's and the student's next-token distributions,
// each with its gradient with respect to the student's logits. Shared by offline KD (train),
// on-policy distillation and evaluation.
//
// Both sets of logits are divided by the temperature T before the softmax. Divergences, with
// p = teacher, q = student:
//   fkl  forward KL   KL(p‖q) = Σ p (log p − log q)         (mode covering; Hinton et al.)
//   rkl  reverse KL   KL(q‖p) = Σ q (log q − log p)         (mode seeking; MiniLLM)
//   jsd  generalised JSD with β (GKD): m = β p + (1−β) q,
//        JSD_β = β KL(p‖m) + (1−β) KL(q‖m);  β = 0 is taken as fkl and β = 1 as rkl, as in GKD
//   tvd  total variation  ½ Σ |p − q|
// The loss is the mean over counted rows, times T² when `t2_scale` is set (Hinton et al.: keeps
// gradient magnitudes comparable across temperatures).
//
// The teacher is given either as full logits, or as its top-k per position (ids + log-probs at
// temperature 1). For top-k there are two conventions (TopKMode):
//   renormalize  both distributions restricted to the k ids and renormalised there; the mass
//                outside is ignored (the usual "sparse KD");
//   tail         a (k+1)-th outcome "any other token" carries the mass outside the top-k on both
//                sides: teacher 1 − Σ p_topk, student Σ_{j∉topk} q_j. With T ≠ 1 this coarse
//                (k+1)-outcome teacher distribution is the one tempered (p_i^(1/T) renormalised).
// Teacher and student vocabularies may differ by padding rows only: the first
// min(V_student, V_teacher) ids are used.
#pragma once

#include <cstdint>
#include <string>

namespace distill {

enum class Divergence { ForwardKL, ReverseKL, JSD, TVD };
enum class TopKMode { Renormalize, Tail };

Divergence parse_divergence(const std::string& name);  // fkl | rkl | jsd | tvd; throws otherwise
TopKMode parse_topk_mode(const std::string& name);     // renormalize | tail

struct KdSettings {
  Divergence divergence = Divergence::ForwardKL;
  float temperature = 1.0f;
  float beta = 0.5f;        // JSD mixture weight of the teacher
  bool t2_scale = false;    // multiply loss and gradient by T²
};

// Teacher as full logits. student [n, v_student], teacher [n, v_teacher]; mask [n] (null = every
// row counts). Returns the loss; if d_student is not null, adds grad_scale · d loss / d student.
double kd_loss_full(const float* student, int64_t v_student, const float* teacher, int64_t v_teacher,
                    const uint8_t* mask, int64_t n, const KdSettings& settings, float* d_student, float grad_scale);

// Teacher as top-k: ids [n, k] (int32, each < v_student), logprobs [n, k] (natural log, T = 1).
// Throws distill::Error for an id outside the student's vocabulary.
double kd_loss_topk(const float* student, int64_t v_student, const int32_t* ids, const float* logprobs, int64_t k,
                    const uint8_t* mask, int64_t n, const KdSettings& settings, TopKMode mode, float* d_student,
                    float grad_scale);

// ULD (Boizard et al. 2024, "Universal Logit Distillation"): where the teacher's tokens cannot be
// matched to the student's, only the shapes of the two distributions are compared — the
// Wasserstein-1 distance between their sorted probabilities, Σ_i |q_(i) − p_(i)| over the k
// largest on each side (temperature 1). The teacher gives its k largest log-probabilities
// (sorted_logp [n, k], any order); ids do not matter. Returns the mean over counted rows; if
// d_student is not null, adds grad_scale · d loss / d student (the sort is piecewise constant).
double uld_loss_topk(const float* student, int64_t v_student, const float* sorted_logp, int64_t k, const uint8_t* mask,
                     int64_t n, float* d_student, float grad_scale);

}  // namespace distill
