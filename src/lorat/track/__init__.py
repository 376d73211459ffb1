"""lorat.track"""
