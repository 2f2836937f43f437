"""Sparsity Lab: routing only. Each lab is one thin page; the sidebar shows the store and workers."""

import streamlit as st

from pages._access import gate
from pages._ui import sidebar_status

st.set_page_config(page_title="Sparsity Lab", page_icon="🕸️", layout="wide")

PAGES = {
    "Labs": [
        # the default page answers at / ; its url_path only names it apart from the hidden /pruning below
        st.Page("pages/pruning.py", title="Pruning", icon="✂️", default=True, url_path="pruning-home"),
        # /pruning?run=ID, like every other lab's /<lab>?run=ID (without it: "Page not found", then /)
        st.Page("pages/pruning.py", title="Pruning", icon="✂️", url_path="pruning", visibility="hidden"),
        st.Page("pages/sae.py", title="SAE features", icon="🔬"),
        st.Page("pages/kernels.py", title="Kernel latency", icon="⏱️"),
        st.Page("pages/explain.py", title="Explanations", icon="🔍"),
    ],
    "Results": [
        st.Page("pages/runs.py", title="Runs", icon="📋"),
        st.Page("pages/compare.py", title="Compare", icon="⚖️"),
    ],
}

gate(PAGES)  # before any page, sidebar content or run data (the pages declared hidden while closed)
sidebar_status()
st.navigation(PAGES).run()
