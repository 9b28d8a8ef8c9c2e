"""Interpretability of adversarial perturbations (StrAttack paper, Section 6 and Appendix E).

* :func:`asm`: adversarial saliency map, eq. (61) (default) or eq. (60);
* :func:`asm_mask` / :func:`cam_mask`: Boolean maps ``B`` of the entries above a per-image
  percentile of the ASM / CAM scores;
* :func:`interpretability_score`: ``IS = ||B o delta||_2 / ||delta||_2``, eq. (23) (NaN for
  delta = 0); :func:`interpretability_curve`: IS versus the percentile (Fig. 3(a));
* :func:`cam`: class activation maps (Zhou et al. 2016) of GAP + linear networks (Fig. 4, A2);
* :func:`grad_cam`: Grad-CAM (Selvaraju et al. 2017) of any CNN at a chosen layer;
  :func:`choose_class_maps`: CAM where the head allows it, else Grad-CAM.

Figures: :mod:`strattack.viz.interpretability`.
"""
from .asm import asm, logit_gradients
from .cam import cam, find_cam_layers
from .class_maps import ClassMaps, choose_class_maps
from .gapnet import GAPNet
from .gradcam import default_gradcam_layer, grad_cam
from .score import (asm_mask, cam_mask, interpretability_curve, interpretability_score,
                    percentile_mask, percentile_threshold)

__all__ = ["asm", "logit_gradients", "asm_mask", "cam_mask", "percentile_mask",
           "percentile_threshold", "interpretability_score", "interpretability_curve", "cam",
           "find_cam_layers", "GAPNet", "grad_cam", "default_gradcam_layer", "ClassMaps",
           "choose_class_maps"]
