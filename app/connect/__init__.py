"""The public side of connecting an account: the link page and WeChat's redirect landing."""
