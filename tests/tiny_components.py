"""Tiny random-weight stand-ins for the real generator and segmenters' checkpoints, built offline and
saved with `save_pretrained`, so the code that loads Stable Diffusion, Grounding DINO, SAM and CLIPSeg
runs in tests in seconds. Their outputs are arbitrary; their files are laid out like the real ones.

    save_tiny_diffusers(tmp_path / "sd")          # a StableDiffusionPipeline directory (16 px images)
    save_tiny_grounding_dino(tmp_path / "gdino")  # GroundingDinoForObjectDetection + its processor
    save_tiny_sam(tmp_path / "sam")               # SamModel + SamProcessor
    save_tiny_clipseg(tmp_path / "clipseg")       # CLIPSegForImageSegmentation + CLIPSegProcessor
"""
from __future__ import annotations

import string
from pathlib import Path

import torch


def clip_tokenizer(max_length: int):
    """A byte-level CLIP tokenizer without merges: every text is spelled one byte at a time."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = ["<|startoftext|>", "<|endoftext|>", *chars, *(f"{c}</w>" for c in chars)]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=max_length)


def bert_tokenizer():
    """A lowercase WordPiece tokenizer spelling any word of letters and digits one character at a time."""
    from transformers import BertTokenizer

    chars = string.ascii_lowercase + string.digits
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.punctuation, *chars, *(f"##{c}" for c in chars)]
    return BertTokenizer(vocab={t: i for i, t in enumerate(tokens)})


def save_tiny_diffusers(dpath: Path) -> Path:
    """A StableDiffusionPipeline (8 x 8 latents, 16 x 16 images) with a DDIM scheduler."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = clip_tokenizer(max_length=16)
    unet = UNet2DConditionModel(sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=2)
    vae = AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1, sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                                num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
                                                bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(dpath)
    return dpath


def save_tiny_grounding_dino(dpath: Path) -> Path:
    """GroundingDinoForObjectDetection (a 4-stage Swin of width 8, a 1-layer BERT, d_model 64, 8
    queries) and a GroundingDinoProcessor reading 64 x 64 inputs."""
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    torch.manual_seed(0)
    tokenizer = bert_tokenizer()
    backbone = SwinConfig(image_size=64, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4,
                          out_indices=[2, 3, 4])
    text = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64)
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=64, num_queries=8,
                                 encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                                 encoder_attention_heads=2, decoder_attention_heads=2, encoder_n_points=2,
                                 decoder_n_points=2, max_text_len=32)
    # d_model 64: GroupNorm(32, d_model) needs 2 channels a group on the 1 x 1 level; 2 decoder layers to tie boxes
    GroundingDinoForObjectDetection(config).save_pretrained(dpath)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 64})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(dpath)
    return dpath


def save_tiny_sam(dpath: Path) -> Path:
    """SamModel (a 1-block ViT of width 16 on 64 x 64 inputs, 8 px patches) and its SamProcessor."""
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    torch.manual_seed(0)
    vision = SamVisionConfig(hidden_size=16, output_channels=16, num_hidden_layers=1, num_attention_heads=2,
                             image_size=64, patch_size=8, window_size=4, global_attn_indexes=[0], num_pos_feats=8,
                             mlp_dim=32)
    prompt = SamPromptEncoderConfig(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(hidden_size=16, mlp_dim=32, num_hidden_layers=1, num_attention_heads=2,
                                   iou_head_hidden_dim=16)
    SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt,
                       mask_decoder_config=decoder)).save_pretrained(dpath)
    image_processor = SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                        mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16})
    SamProcessor(image_processor=image_processor).save_pretrained(dpath)
    return dpath


def save_tiny_sam2(dpath: Path) -> Path:
    """Sam2Model (a 12-block Hiera of width 8 on 64 x 64 inputs, a 16-wide mask decoder) and its
    Sam2Processor: LangSAM's SAM 2.1 at toy size."""
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2ImageProcessor,
        Sam2MaskDecoderConfig,
        Sam2Model,
        Sam2Processor,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    torch.manual_seed(0)
    backbone = Sam2HieraDetConfig(hidden_size=8, image_size=64, patch_stride=4, patch_kernel_size=7, patch_padding=3,
                                  blocks_per_stage=[1, 2, 7, 2], embed_dim_per_stage=[8, 16, 32, 64],
                                  num_attention_heads_per_stage=[1, 1, 1, 1])
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[64, 32, 16, 8],
                              backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]], fpn_hidden_size=16)
    prompt = Sam2PromptEncoderConfig(hidden_size=16, image_size=64, patch_size=16, mask_input_channels=4)
    decoder = Sam2MaskDecoderConfig(hidden_size=16, mlp_dim=16, num_attention_heads=2, iou_head_hidden_dim=16)
    Sam2Model(Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder, image_size=64,
                         memory_attention_hidden_size=16, memory_encoder_hidden_size=16, mask_downsampler_embed_dim=16,
                         memory_fuser_embed_dim=16, memory_attention_num_layers=1,
                         memory_attention_feed_forward_hidden_size=16)).save_pretrained(dpath)
    Sam2Processor(image_processor=Sam2ImageProcessor(size={"height": 64, "width": 64})).save_pretrained(dpath)
    return dpath


def save_tiny_clipseg(dpath: Path) -> Path:
    """CLIPSegForImageSegmentation (2-layer text and vision towers of width 16, 32 x 32 inputs) and a
    CLIPSegProcessor."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    torch.manual_seed(0)
    tokenizer = clip_tokenizer(max_length=32)
    text = dict(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)
    config = CLIPSegConfig(text_config=text, vision_config=vision, projection_dim=16, extract_layers=(0, 1),
                           reduce_dim=8, decoder_num_attention_heads=2, decoder_intermediate_size=16)
    CLIPSegForImageSegmentation(config).save_pretrained(dpath)
    image_processor = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(dpath)
    return dpath
