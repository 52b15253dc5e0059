"""Score networks: the NCSN U-Net, the mean bypass (independent or coupled), time embedding."""

from sciscore.nn.embedding import GaussianFourierEmbedding
from sciscore.nn.layers import ResidualBlock, conv3x3, group_count
from sciscore.nn.mean_bypass import BYPASS_MODES, MeanBypass, MeanEmbedding
from sciscore.nn.network import NetworkConfig, Preconditioner, Scalings, ScoreNetwork, build_network, count_parameters
from sciscore.nn.unet import UNet

__all__ = [
    "GaussianFourierEmbedding", "ResidualBlock", "conv3x3", "group_count",
    "BYPASS_MODES", "MeanBypass", "MeanEmbedding",
    "NetworkConfig", "Preconditioner", "Scalings", "ScoreNetwork", "build_network", "count_parameters", "UNet",
]
