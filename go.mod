module github.com/xenha/xenha

go 1.26
