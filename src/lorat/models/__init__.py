"""lorat.models"""
