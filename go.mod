module github.com/moatsec/moat

go 1.26.8
